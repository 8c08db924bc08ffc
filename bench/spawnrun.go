package bench

import (
	"context"
	"errors"
	"fmt"
)

// RunSpawned starts a cluster as spawn describes, runs cfg against it (cfg.Nodes is replaced
// by the spawned nodes' addresses; the fsync baseline runs in the cluster's directory), adds
// the nodes' memory to the report, and stops the cluster.
func RunSpawned(ctx context.Context, cfg Config, spawn SpawnConfig) (*Report, error) {
	return runSpawned(ctx, cfg, spawn, nil)
}

func runSpawned(ctx context.Context, cfg Config, spawn SpawnConfig, start starter) (rep *Report, err error) {
	if cfg.Logger != nil {
		spawn.Logger = cfg.Logger
	}
	if start == nil {
		if start, err = defaultStarter(spawn.Binary); err != nil {
			return nil, err
		}
	}
	c, err := startCluster(ctx, spawn, start)
	if err != nil {
		return nil, fmt.Errorf("spawn cluster: %w", err)
	}
	defer func() {
		if err != nil {
			c.markFailed()
		}
		err = errors.Join(err, c.Close())
	}()
	cfg.Nodes = nil
	cfg.TLS, cfg.Token = nil, "" // the spawned nodes are plain and open
	for _, n := range c.nodes {
		cfg.Nodes = append(cfg.Nodes, n.HTTPAddr)
	}
	cfg.DataDir = c.cfg.Dir
	cfg.nodeCPU = c.cpu
	rep, err = Run(ctx, cfg)
	if rep != nil {
		rep.Memory = c.memory()
	}
	return rep, err
}
