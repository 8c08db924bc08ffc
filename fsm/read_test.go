package fsm

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestKeys(t *testing.T) {
	s := openTestStore(t)
	keys := []string{"foo", "foo/", "foo/bar", "foo/baz/1", "foo/baz/2", "foo/qux/", "foobar", "web/1", "web/2", "web/sub/3", "x::y::z", "\xff\xff/a", "\xff\xff/b"}
	var cmds []Command
	for _, k := range keys {
		cmds = append(cmds, set(k, "v"))
	}
	mustApply(t, s, logsFrom(1, cmds...)...)

	tests := []struct {
		prefix, sep string
		want        []string
	}{
		{"", "", keys},
		{"foo", "", []string{"foo", "foo/", "foo/bar", "foo/baz/1", "foo/baz/2", "foo/qux/", "foobar"}},
		// Consul's examples: ?keys&separator=/ lists one level.
		{"", "/", []string{"foo", "foo/", "foobar", "web/", "x::y::z", "\xff\xff/"}},
		{"foo/", "/", []string{"foo/", "foo/bar", "foo/baz/", "foo/qux/"}},
		{"foo", "/", []string{"foo", "foo/", "foobar"}},
		{"web/", "/", []string{"web/1", "web/2", "web/sub/"}},
		{"web/sub/", "/", []string{"web/sub/3"}},
		{"x", "::", []string{"x::"}},
		{"x::", "::", []string{"x::y::"}},
		{"\xff", "/", []string{"\xff\xff/"}},
		{"nope", "/", nil},
	}
	for _, tt := range tests {
		t.Run(tt.prefix+"|"+tt.sep, func(t *testing.T) {
			got, err := s.Keys(tt.prefix, tt.sep)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Keys(%q, %q): got %q, want %q", tt.prefix, tt.sep, got, tt.want)
			}
		})
	}
}

func TestListAndGet(t *testing.T) {
	s := openTestStore(t)
	mustApply(t, s, logsFrom(1, set("b/2", "x"), set("a", "y"), set("b/1", "z"), set("c", ""))...)

	var got []string
	for _, e := range mustList(t, s, "b/") {
		got = append(got, e.Key+"="+string(e.Value))
	}
	if want := []string{"b/1=z", "b/2=x"}; !slices.Equal(got, want) {
		t.Errorf("List(b/): got %q, want %q", got, want)
	}
	if es := mustList(t, s, ""); len(es) != 4 || es[0].Key != "a" || es[3].Key != "c" {
		t.Errorf("List(\"\"): got %+v, want a, b/1, b/2, c", es)
	}
	e, ok := mustGet(t, s, "b/1")
	if want := (Entry{Key: "b/1", Value: []byte("z"), CreateIndex: 3, ModifyIndex: 3}); !ok || !entriesEqual([]Entry{e}, []Entry{want}) {
		t.Errorf("Get(b/1): got %+v, %v; want %+v", e, ok, want)
	}
	if _, ok := mustGet(t, s, "b"); ok {
		t.Errorf("Get(b): found, want absent")
	}
	// Values are copies: changing one must not change the store.
	e.Value[0] = 'Q'
	if again, _ := mustGet(t, s, "b/1"); string(again.Value) != "z" {
		t.Errorf("got %q after modifying a returned value, want z", again.Value)
	}

	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Keys != 4 || st.AppliedIndex != 4 || st.SizeBytes <= 0 {
		t.Errorf("Stats: got %+v, want 4 keys at index 4 and a positive size", st)
	}
}

// TestListLimit: ListLimit and KeysLimit answer in full up to their byte
// limit (keys, stored values and EntryOverhead per entry) and refuse with
// ErrResultTooLarge past it; 0 means no limit.
func TestListLimit(t *testing.T) {
	s := openTestStore(t)
	var cmds []Command
	for i := range 10 {
		cmds = append(cmds, set("p/"+strings.Repeat("k", 8)+string(rune('0'+i)), strings.Repeat("v", 90)))
	}
	mustApply(t, s, logsFrom(1, cmds...)...)
	const entry = 11 + 4 + 90 + EntryOverhead // key, stored value (4-byte entry header here), overhead
	const name = 11 + EntryOverhead

	for _, tc := range []struct {
		max  int64
		want int // entries, -1 = too large
	}{{0, 10}, {10 * entry, 10}, {10*entry - 1, -1}, {entry, -1}, {1, -1}} {
		got, err := s.ListLimit("p/", tc.max)
		switch {
		case tc.want < 0 && !errors.Is(err, ErrResultTooLarge):
			t.Errorf("ListLimit(max %d): %d entries, %v; want ErrResultTooLarge", tc.max, len(got), err)
		case tc.want >= 0 && (err != nil || len(got) != tc.want):
			t.Errorf("ListLimit(max %d): %d entries, %v; want %d", tc.max, len(got), err, tc.want)
		}
	}
	for _, tc := range []struct {
		max       int64
		sep       string
		wantNames int // -1 = too large
	}{{0, "", 10}, {10 * name, "", 10}, {10*name - 1, "", -1}, {2 + EntryOverhead, "/", 1}, {1 + EntryOverhead, "/", -1}} {
		got, err := s.KeysLimit("", tc.sep, tc.max)
		switch {
		case tc.wantNames < 0 && !errors.Is(err, ErrResultTooLarge):
			t.Errorf("KeysLimit(max %d, sep %q): %v, %v; want ErrResultTooLarge", tc.max, tc.sep, got, err)
		case tc.wantNames >= 0 && (err != nil || len(got) != tc.wantNames):
			t.Errorf("KeysLimit(max %d, sep %q): %v, %v; want %d names", tc.max, tc.sep, got, err, tc.wantNames)
		}
	}
	// Only what is under the prefix counts.
	mustApply(t, s, logsFrom(11, set("q", strings.Repeat("z", 10000)))...)
	if got, err := s.ListLimit("p/", 10*entry); err != nil || len(got) != 10 {
		t.Errorf("ListLimit(p/) with a big key elsewhere: %d entries, %v; want 10", len(got), err)
	}
}
