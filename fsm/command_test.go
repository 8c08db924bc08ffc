package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

func roundTripCommands() []Command {
	return []Command{
		{Op: OpSet, Key: "a", Value: []byte("v"), Flags: 42},
		{Op: OpSet, Key: "empty-value"},
		{Op: OpSet, Key: strings.Repeat("k", MaxKeySize), Value: bytes.Repeat([]byte{0xff}, MaxValueSize), Flags: 1<<64 - 1},
		{Op: OpDelete, Key: "a"},
		{Op: OpCAS, Key: "a", Value: []byte("v2"), Index: 0},
		{Op: OpCAS, Key: "a", Value: []byte("v2"), Flags: 7, Index: 1<<64 - 1},
		{Op: OpCAD, Key: "a", Index: 128},
		{Op: OpDeletePrefix, Key: "dir/"},
		{Op: OpDeletePrefix},
		{Op: OpNoop},
		{Op: OpSetMeta, Key: "node/n1/http", Value: []byte("127.0.0.1:8500")},
		{Op: OpDeleteMeta, Key: "node/n1/http"},
	}
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range roundTripCommands() {
		t.Run(c.Op.String(), func(t *testing.T) {
			b := c.Encode()
			got, err := DecodeCommand(b)
			if err != nil {
				t.Fatalf("DecodeCommand: %v", err)
			}
			if got.Op != c.Op || got.Key != c.Key || !bytes.Equal(got.Value, c.Value) || got.Flags != c.Flags || got.Index != c.Index {
				t.Errorf("got %+v, want %+v", got, c)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			if again := got.Encode(); !bytes.Equal(again, b) {
				t.Errorf("re-encoding: got %x, want %x", again, b)
			}
			if app := c.AppendEncode([]byte("prefix")); !bytes.Equal(app, append([]byte("prefix"), b...)) {
				t.Errorf("AppendEncode: got %x, want prefix + %x", app, b)
			}
		})
	}
}

func TestDecodeCommandCopiesValue(t *testing.T) {
	b := set("k", "value").Encode()
	c, err := DecodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if string(c.Value) != "value" {
		t.Errorf("got value %q after clobbering the input, want %q", c.Value, "value")
	}
}

func TestDecodeCommandErrors(t *testing.T) {
	valid := Command{Op: OpCAS, Key: "key", Value: []byte("value"), Flags: 300, Index: 70000}.Encode()
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"version only", []byte{1}},
		{"version 0", cat([]byte{0}, valid[1:])},
		{"version 2", cat([]byte{2}, valid[1:])},
		{"op 0", cat([]byte{1, 0}, valid[2:])},
		{"op 11", cat([]byte{1, 11}, valid[2:])},
		{"op 255", cat([]byte{1, 255}, valid[2:])},
		{"trailing byte", cat(valid, []byte{0})},
		{"forged key length", cat([]byte{1, byte(OpSet)}, uv(1<<62), []byte("k"))},
		{"key length beyond input", cat([]byte{1, byte(OpSet)}, uv(10), []byte("abc"))},
		{"key over limit", cat([]byte{1, byte(OpSet)}, uv(MaxKeySize+1), bytes.Repeat([]byte("k"), MaxKeySize+1), uv(0), uv(0), uv(0))},
		{"forged value length", cat([]byte{1, byte(OpSet)}, uv(1), []byte("k"), uv(1<<63))},
		{"value over limit", cat([]byte{1, byte(OpSet)}, uv(1), []byte("k"), uv(MaxValueSize+1))},
		{"value length beyond input", cat([]byte{1, byte(OpSet)}, uv(1), []byte("k"), uv(100), []byte("short"))},
		{"varint overflow", cat([]byte{1, byte(OpSet)}, bytes.Repeat([]byte{0xff}, 11))},
		{"non-minimal varint", cat([]byte{1, byte(OpSet)}, []byte{0x81, 0x00}, []byte("k"), uv(0), uv(0), uv(0))},
		{"missing index", cat([]byte{1, byte(OpSet)}, uv(1), []byte("k"), uv(0), uv(0))},
		{"garbage", []byte("this is not a command at all")},
	}
	for i := range len(valid) {
		tests = append(tests, struct {
			name string
			in   []byte
		}{"truncated", valid[:i]})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DecodeCommand(tt.in)
			if !errors.Is(err, ErrBadCommand) {
				t.Errorf("DecodeCommand(%x) = %+v, %v; want an error wrapping ErrBadCommand", tt.in, c, err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		c    Command
		want error // nil, or a sentinel the error must also wrap besides ErrBadCommand
	}{
		{"set", set("a", "b"), nil},
		{"set empty key", set("", "b"), ErrEmptyKey},
		{"delete empty key", Command{Op: OpDelete}, ErrEmptyKey},
		{"cas empty key", Command{Op: OpCAS}, ErrEmptyKey},
		{"set-meta empty key", Command{Op: OpSetMeta}, ErrEmptyKey},
		{"delete-prefix empty key", Command{Op: OpDeletePrefix}, nil},
		{"noop", Command{Op: OpNoop}, nil},
		{"key at limit", set(strings.Repeat("k", MaxKeySize), ""), nil},
		{"key over limit", set(strings.Repeat("k", MaxKeySize+1), ""), ErrKeyTooLarge},
		{"value at limit", Command{Op: OpSet, Key: "k", Value: make([]byte, MaxValueSize)}, nil},
		{"value over limit", Command{Op: OpSet, Key: "k", Value: make([]byte, MaxValueSize+1)}, ErrValueTooLarge},
		{"op 0", Command{Key: "k"}, ErrBadCommand},
		{"op 11", Command{Op: 11, Key: "k"}, ErrBadCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Errorf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrBadCommand) || !errors.Is(err, tt.want) {
				t.Errorf("got %v, want an error wrapping ErrBadCommand and %v", err, tt.want)
			}
		})
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range roundTripCommands() {
		if len(c.Value) < 1024 { // keep the corpus small
			f.Add(c.Encode())
		}
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 0x81, 0x00})
	f.Add([]byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})
	f.Add(Command{Op: OpBatch, Value: EncodeBatch([]Command{
		set("a", "1"), {Op: OpCAS, Key: "b", Value: []byte("2"), Index: 9}, {Op: OpDelete, Key: "c"},
	})}.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("error %v does not wrap ErrBadCommand", err)
			}
			return
		}
		if again := c.Encode(); !bytes.Equal(again, b) {
			t.Fatalf("decoded %+v re-encodes to %x, want %x", c, again, b)
		}
		if err := c.Validate(); err != nil && !errors.Is(err, ErrBadCommand) {
			t.Fatalf("validate error %v does not wrap ErrBadCommand", err)
		}
		if c.Op == OpBatch {
			if cmds, err := DecodeBatch(c.Value); err == nil && !bytes.Equal(EncodeBatch(cmds), c.Value) {
				t.Fatalf("batch %x re-encodes differently", c.Value)
			}
		}
	})
}
