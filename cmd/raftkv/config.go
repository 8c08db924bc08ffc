package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/pflag"
)

// The server's config file (--config FILE, TOML) sets the same settings as
// its flags, under the flags' names (data-dir, or data_dir). Precedence, as
// in Consul and etcd: command line, then RAFTKV_* environment, then the file,
// then the defaults. Unknown names and values of the wrong type are errors
// that name the file and the setting, so a typo never goes unnoticed.

// applyConfigFile sets every flag the file names that the command line and
// environment left alone.
func applyConfigFile(fs *pflag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return usageError{fmt.Errorf("read config file: %w", err)}
	}
	var settings map[string]any
	if err := toml.Unmarshal(data, &settings); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, col := de.Position()
			return usageError{fmt.Errorf("config file %s, line %d column %d: %s", path, row, col, de.Error())}
		}
		return usageError{fmt.Errorf("config file %s: %w", path, err)}
	}
	names := make([]string, 0, len(settings))
	for name := range settings {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic: the first bad setting is always the same one
	for _, name := range names {
		flagName := strings.ReplaceAll(name, "_", "-")
		f := fs.Lookup(flagName)
		if f == nil || flagName == "config" || flagName == "help" {
			return usageError{fmt.Errorf("config file %s: unknown setting %q (settings are the flag names of `raftkv server --help`)", path, name)}
		}
		if f.Changed {
			continue // the command line or the environment wins
		}
		val, err := configValue(f, settings[name])
		if err != nil {
			return usageError{fmt.Errorf("config file %s: setting %q: %w", path, name, err)}
		}
		if err := fs.Set(flagName, val); err != nil {
			return usageError{fmt.Errorf("config file %s: setting %q = %v: %w", path, name, settings[name], err)}
		}
	}
	return nil
}

// configValue turns a TOML value into the flag's string form.
func configValue(f *pflag.Flag, v any) (string, error) {
	kind := f.Value.Type()
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		if kind != "bool" {
			return "", fmt.Errorf("got a boolean, want a %s", kindName(kind))
		}
		return fmt.Sprint(x), nil
	case int64:
		if kind == "duration" {
			return "", fmt.Errorf("got the number %d, want a duration string such as \"500ms\" or \"10s\"", x)
		}
		return fmt.Sprint(x), nil
	case float64:
		return fmt.Sprint(x), nil
	case []any:
		if kind != "stringSlice" && kind != "stringArray" {
			return "", fmt.Errorf("got a list, want a %s", kindName(kind))
		}
		parts := make([]string, len(x))
		for i, e := range x {
			s, ok := e.(string)
			if !ok {
				return "", fmt.Errorf("list element %d is %T, want a string", i, e)
			}
			if strings.Contains(s, ",") {
				return "", fmt.Errorf("list element %q contains a comma", s)
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		if kind != "stringToString" {
			return "", fmt.Errorf("got a table, want a %s", kindName(kind))
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			s, ok := x[k].(string)
			if !ok {
				return "", fmt.Errorf("table entry %q is %T, want a string", k, x[k])
			}
			parts[i] = k + "=" + s
		}
		return strings.Join(parts, ","), nil
	default:
		return "", fmt.Errorf("unsupported value of type %T", v)
	}
}

func kindName(kind string) string {
	switch kind {
	case "stringSlice", "stringArray":
		return "list of strings"
	case "stringToString":
		return "table of strings"
	case "duration":
		return "duration string"
	}
	return kind
}
