package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/cilium/ebpf"
)

// rawEntry is one map entry as the kernel returned it: the key (nil for
// queues and stacks) and the value, one per CPU for per-CPU maps.
type rawEntry struct {
	key  []byte
	vals [][]byte
}

// mapReader reads one map's entries as raw bytes, with batch operations where
// the kernel supports them. It is built once per exported map.
type mapReader struct {
	name    string
	typ     ebpf.MapType
	keySize int
	valSize int
	max     int
	perCPU  bool
	ncpu    int
	// noBatch is set after the kernel refused a batch operation, so the
	// next reads iterate straight away.
	noBatch bool
}

func newMapReader(name string, m *ebpf.Map) (*mapReader, error) {
	r := &mapReader{
		name:    name,
		typ:     m.Type(),
		keySize: int(m.KeySize()),
		valSize: int(m.ValueSize()),
		max:     int(m.MaxEntries()),
	}
	switch r.typ {
	case ebpf.PerCPUHash, ebpf.PerCPUArray, ebpf.LRUCPUHash:
		r.perCPU = true
		n, err := ebpf.PossibleCPU()
		if err != nil {
			return nil, err
		}
		r.ncpu = n
	case ebpf.Hash, ebpf.Array, ebpf.LRUHash, ebpf.LPMTrie, ebpf.Queue, ebpf.Stack:
	case ebpf.RingBuf:
		return nil, fmt.Errorf("map %s is a ring buffer: export it under events, not metrics", name)
	default:
		return nil, fmt.Errorf("map %s: type %s cannot be exported as a metric (hash, array, LRU hash, per-CPU hash/array, LRU per-CPU hash, LPM trie, queue and stack can)", name, r.typ)
	}
	return r, nil
}

func (r *mapReader) hashFamily() bool {
	switch r.typ {
	case ebpf.Hash, ebpf.LRUHash, ebpf.PerCPUHash, ebpf.LRUCPUHash:
		return true
	}
	return false
}

func (r *mapReader) arrayFamily() bool { return r.typ == ebpf.Array || r.typ == ebpf.PerCPUArray }

func (r *mapReader) keyless() bool { return r.typ == ebpf.Queue || r.typ == ebpf.Stack }

// drainsInPlace reports whether the map can be emptied entry by entry
// without losing concurrent updates to other entries: hash maps with
// lookup-and-delete, queues and stacks by popping. Arrays and LPM tries are
// emptied through the swap.
func (r *mapReader) drainsInPlace() bool { return r.hashFamily() || r.keyless() }

// rows allocates n rows of size bytes as a slice of byte arrays (which the
// batch API accepts) and returns a flat view of the same memory.
func rows(n, size int) (any, []byte) {
	if n == 0 || size == 0 {
		return reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(size, reflect.TypeFor[byte]())), n, n).Interface(), nil
	}
	v := reflect.MakeSlice(reflect.SliceOf(reflect.ArrayOf(size, reflect.TypeFor[byte]())), n, n)
	return v.Interface(), unsafe.Slice((*byte)(v.UnsafePointer()), n*size)
}

// read returns every entry. With drain, the map is empty afterwards: hash
// maps through lookup-and-delete batches, queues and stacks by popping,
// arrays by writing zeros and LPM tries by deleting each key read (the last
// two are only used on an idle swap instance, where nothing writes).
func (r *mapReader) read(m *ebpf.Map, drain bool) ([]rawEntry, error) {
	var out []rawEntry
	err := r.readChunks(m, drain, func(chunk []rawEntry) { out = append(out, chunk...) })
	return out, err
}

// readChunks is read, handing entries to fn chunk by chunk as the kernel
// returns them, so the caller can decode one chunk while the next is read.
func (r *mapReader) readChunks(m *ebpf.Map, drain bool, fn func([]rawEntry)) error {
	out, err := r.readSome(m, drain, fn)
	if len(out) > 0 {
		fn(out)
	}
	return err
}

func (r *mapReader) readSome(m *ebpf.Map, drain bool, fn func([]rawEntry)) ([]rawEntry, error) {
	switch {
	case r.keyless():
		return r.pop(m)
	case r.hashFamily() || r.arrayFamily():
		if !r.noBatch {
			err := r.batch(m, drain && r.hashFamily(), fn)
			if err == nil {
				if drain && r.arrayFamily() {
					return nil, r.zero(m)
				}
				return nil, nil
			}
			if !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, errBatchUnsupported) {
				return nil, err
			}
			r.noBatch = true
		}
	}
	out, err := r.iterate(m)
	if err != nil || !drain {
		return out, err
	}
	if r.arrayFamily() {
		return out, r.zero(m)
	}
	for _, e := range out {
		if err := m.Delete(e.key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, fmt.Errorf("map %s: delete: %w", r.name, err)
		}
	}
	return out, nil
}

var errBatchUnsupported = errors.New("batch not supported")

func (r *mapReader) batchSize() int {
	n := r.max
	if n > 4096 {
		n = 4096
	}
	if n < 64 {
		n = 64
	}
	return n
}

// batch reads with BPF_MAP_LOOKUP(_AND_DELETE)_BATCH, handing each chunk to
// fn. It fails with errBatchUnsupported before handing anything over when
// the kernel refuses batches for this map.
func (r *mapReader) batch(m *ebpf.Map, andDelete bool, fn func([]rawEntry)) error {
	chunk := r.batchSize()
	nvals := chunk
	if r.perCPU {
		nvals = chunk * r.ncpu
	}
	var cursor ebpf.MapBatchCursor
	handed := false
	for {
		// Fresh buffers per chunk: the entries point into them, no copy.
		keysOut, kb := rows(chunk, r.keySize)
		valsOut, vb := rows(nvals, r.valSize)
		var n int
		var err error
		if andDelete {
			n, err = m.BatchLookupAndDelete(&cursor, keysOut, valsOut, nil)
		} else {
			n, err = m.BatchLookup(&cursor, keysOut, valsOut, nil)
		}
		done := errors.Is(err, ebpf.ErrKeyNotExist)
		if err != nil && !done {
			unsupported := errors.Is(err, ebpf.ErrNotSupported) || isErrno(err, "invalid argument") || isErrno(err, "not supported")
			if unsupported && !handed {
				return errBatchUnsupported
			}
			return fmt.Errorf("map %s: batch read: %w", r.name, err)
		}
		// One allocation per chunk for all keys and values.
		perVal := 1
		if r.perCPU {
			perVal = r.ncpu
		}
		vs := make([][]byte, n*perVal)
		out := make([]rawEntry, 0, n)
		for i := 0; i < n; i++ {
			e := rawEntry{key: kb[i*r.keySize : (i+1)*r.keySize : (i+1)*r.keySize]}
			e.vals = vs[i*perVal : (i+1)*perVal : (i+1)*perVal]
			for c := 0; c < perVal; c++ {
				off := (i*perVal + c) * r.valSize
				e.vals[c] = vb[off : off+r.valSize : off+r.valSize]
			}
			out = append(out, e)
		}
		if n > 0 {
			fn(out)
			handed = true
		}
		if done || n == 0 {
			return nil
		}
	}
}

func isErrno(err error, text string) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == text {
			return true
		}
	}
	return false
}

func (r *mapReader) newValue() (any, func() [][]byte) {
	if r.perCPU {
		out, flat := rows(r.ncpu, r.valSize)
		return out, func() [][]byte {
			vals := make([][]byte, r.ncpu)
			for c := range vals {
				vals[c] = append([]byte(nil), flat[c*r.valSize:(c+1)*r.valSize]...)
			}
			return vals
		}
	}
	buf := make([]byte, r.valSize)
	return &buf, func() [][]byte { return [][]byte{append([]byte(nil), buf...)} }
}

func (r *mapReader) iterate(m *ebpf.Map) ([]rawEntry, error) {
	var out []rawEntry
	var key []byte
	valOut, take := r.newValue()
	it := m.Iterate()
	for it.Next(&key, valOut) {
		out = append(out, rawEntry{key: append([]byte(nil), key...), vals: take()})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("map %s: iterate: %w", r.name, err)
	}
	return out, nil
}

// pop empties a queue or stack (reading one is necessarily destructive).
func (r *mapReader) pop(m *ebpf.Map) ([]rawEntry, error) {
	var out []rawEntry
	buf := make([]byte, r.valSize)
	for i := 0; i <= r.max; i++ {
		err := m.LookupAndDelete(nil, &buf)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("map %s: pop: %w", r.name, err)
		}
		out = append(out, rawEntry{vals: [][]byte{append([]byte(nil), buf...)}})
	}
	return out, nil
}

// zero writes zeros into every array slot.
func (r *mapReader) zero(m *ebpf.Map) error {
	n := r.max
	nvals := n
	if r.perCPU {
		nvals = n * r.ncpu
	}
	keysOut, keys := rows(n, 4)
	valsOut, _ := rows(nvals, r.valSize)
	for i := 0; i < n; i++ {
		binary.NativeEndian.PutUint32(keys[i*4:], uint32(i))
	}
	if !r.noBatch {
		if _, err := m.BatchUpdate(keysOut, valsOut, nil); err == nil {
			return nil
		}
	}
	var zeroOut any = make([]byte, r.valSize)
	if r.perCPU {
		zeroOut, _ = rows(r.ncpu, r.valSize)
	}
	for i := 0; i < n; i++ {
		if err := m.Put(uint32(i), zeroOut); err != nil {
			return fmt.Errorf("map %s: clear slot %d: %w", r.name, i, err)
		}
	}
	return nil
}
