package jepsenlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Network puts each node in its own network namespace, joined by a bridge on
// 10.77.<slot>.0/24: the harness is .1 on the bridge, node i is .(11+i).
// Partitions are iptables DROP rules inside the node namespaces, so they cut
// raft and node-to-node HTTP traffic on every port while the harness (.1)
// still reaches every node.
//
// Each run takes a free slot (1..200) recorded in StateDir/<slot>.pid, so
// parallel runs and test binaries do not collide; a slot whose owner is dead
// is cleaned (its node processes killed, namespaces and bridge deleted) and
// reused.
type Network struct {
	slot   int
	logger *slog.Logger
	nodes  int
}

// StateDir holds the slot lock files.
var StateDir = "/run/jepsen-lite"

// ErrNoNetns is returned (wrapped) when real partitions are not possible here.
var ErrNoNetns = errors.New("network namespaces unavailable")

// NetnsAvailable reports why real partitions cannot run here, or nil.
func NetnsAvailable() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("%w: not linux", ErrNoNetns)
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: not root (run as root for real partitions)", ErrNoNetns)
	}
	for _, tool := range []string{"ip", "iptables", "iptables-restore"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%w: %s not found (apt-get install -y iproute2 iptables)", ErrNoNetns, tool)
		}
	}
	return nil
}

func run(ctx context.Context, stdin string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

func (nw *Network) prefix() string  { return "jl" + strconv.Itoa(nw.slot) }
func (nw *Network) bridge() string  { return nw.prefix() + "br" }
func (nw *Network) NS(i int) string { return fmt.Sprintf("%sn%d", nw.prefix(), i) }
func (nw *Network) veth(i int) string {
	return fmt.Sprintf("%sv%d", nw.prefix(), i)
}

// HostIP is the harness's address on the bridge.
func (nw *Network) HostIP() string { return fmt.Sprintf("10.77.%d.1", nw.slot) }

// IP is node i's address (i from 0).
func (nw *Network) IP(i int) string { return fmt.Sprintf("10.77.%d.%d", nw.slot, 11+i) }

// NewNetwork claims a slot and builds the bridge and n namespaces.
func NewNetwork(ctx context.Context, n int, logger *slog.Logger) (*Network, error) {
	if err := NetnsAvailable(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	nw := &Network{logger: logger, nodes: n}
	for slot := 1; slot <= 200; slot++ {
		p := filepath.Join(StateDir, strconv.Itoa(slot)+".pid")
		if b, err := os.ReadFile(p); err == nil {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			if pid > 0 && syscall.Kill(pid, 0) == nil {
				continue // owned by a live run
			}
			logger.Info("cleaning stale network slot", "slot", slot, "dead_owner", pid)
			(&Network{slot: slot, logger: logger, nodes: 5}).teardown(ctx)
			os.Remove(p)
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			continue // lost a race for this slot
		}
		fmt.Fprintf(f, "%d\n", os.Getpid())
		f.Close()
		nw.slot = slot
		break
	}
	if nw.slot == 0 {
		return nil, errors.New("no free network slot")
	}
	nw.teardown(ctx) // leftovers from a crashed run that never wrote its pid
	if err := nw.setup(ctx); err != nil {
		nw.Close()
		return nil, err
	}
	return nw, nil
}

func (nw *Network) setup(ctx context.Context) error {
	br := nw.bridge()
	steps := [][]string{
		{"link", "add", br, "type", "bridge"},
		{"addr", "add", nw.HostIP() + "/24", "dev", br},
		{"link", "set", br, "up"},
	}
	for i := 0; i < nw.nodes; i++ {
		ns, v := nw.NS(i), nw.veth(i)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"link", "set", v, "master", br, "up"},
			[]string{"-n", ns, "addr", "add", nw.IP(i) + "/24", "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
			[]string{"-n", ns, "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := run(ctx, "", "ip", s...); err != nil {
			return fmt.Errorf("network setup: %w", err)
		}
	}
	return nil
}

// teardown kills whatever runs in the namespaces and deletes them and the
// bridge, ignoring what is already gone.
func (nw *Network) teardown(ctx context.Context) {
	for i := 0; i < nw.nodes; i++ {
		ns := nw.NS(i)
		if out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil {
					syscall.Kill(pid, syscall.SIGCONT)
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		_ = run(ctx, "", "ip", "netns", "del", ns)
		_ = run(ctx, "", "ip", "link", "del", nw.veth(i))
	}
	_ = run(ctx, "", "ip", "link", "del", nw.bridge())
}

// Close deletes everything the network created and frees its slot.
func (nw *Network) Close() {
	if nw.slot == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nw.teardown(ctx)
	os.Remove(filepath.Join(StateDir, strconv.Itoa(nw.slot)+".pid"))
	nw.slot = 0
}

// Command returns a command that runs inside node i's namespace. `ip netns
// exec` execs the program itself, so the process's pid is the program's.
func (nw *Network) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", nw.NS(i), name}, args...)...)
}

// Partition applies a grudge: grudge[i] lists the nodes that node i must not
// exchange packets with. Rules are symmetric as given; callers make them so.
// Nodes absent from the grudge are healed.
func (nw *Network) Partition(ctx context.Context, grudge map[int][]int) error {
	return nw.apply(ctx, grudge, 0)
}

// Lossy drops each packet between any two nodes with probability p
// (iptables' statistic match; tc netem is not available here). The harness's
// traffic is untouched.
func (nw *Network) Lossy(ctx context.Context, p float64) error {
	all := map[int][]int{}
	for i := 0; i < nw.nodes; i++ {
		for j := 0; j < nw.nodes; j++ {
			if i != j {
				all[i] = append(all[i], j)
			}
		}
	}
	return nw.apply(ctx, all, p)
}

// apply installs DROP rules for each cut pair, always (p == 0) or with
// probability p, replacing whatever was there.
func (nw *Network) apply(ctx context.Context, grudge map[int][]int, p float64) error {
	match := ""
	if p > 0 {
		match = fmt.Sprintf(" -m statistic --mode random --probability %.3f", p)
	}
	for i := 0; i < nw.nodes; i++ {
		var b strings.Builder
		b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
		peers := append([]int(nil), grudge[i]...)
		sort.Ints(peers)
		for _, j := range peers {
			fmt.Fprintf(&b, "-A INPUT -s %s/32%s -j DROP\n-A OUTPUT -d %s/32%s -j DROP\n", nw.IP(j), match, nw.IP(j), match)
		}
		b.WriteString("COMMIT\n")
		if err := run(ctx, b.String(), "ip", "netns", "exec", nw.NS(i), "iptables-restore", "-w", "5"); err != nil {
			return fmt.Errorf("partition node %d: %w", i, err)
		}
	}
	return nil
}

// Heal removes every rule.
func (nw *Network) Heal(ctx context.Context) error { return nw.Partition(ctx, nil) }
