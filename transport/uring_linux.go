//go:build linux

package transport

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// A flusher worker writes a chunk of connections with one io_uring
// submission: a send per socket, all in one system call, where one write(2)
// per socket pays a system call's entry and exit (and the Go runtime's
// bookkeeping around it) for each. The sends carry MSG_DONTWAIT, so each
// completes inside the submission, as a non-blocking write(2) would: with
// what the socket took, or EAGAIN. Nothing is left for the kernel to finish
// later, so a worker never waits on a slow client here either.

// The io_uring ABI (include/uapi/linux/io_uring.h).
const (
	sysIOUringSetup = 425
	sysIOUringEnter = 426

	ioringOffSQRing = 0
	ioringOffCQRing = 0x8000000
	ioringOffSQEs   = 0x10000000

	ioringEnterGetEvents = 1
	ioringOpSend         = 26
)

// uringParams is struct io_uring_params.
type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
		userAddr                                                        uint64
	}
	cqOff struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
		userAddr                                                        uint64
	}
}

// uringSQE is struct io_uring_sqe, as a send uses it.
type uringSQE struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64
	addr     uint64
	len      uint32
	msgFlags uint32
	userData uint64
	_        [3]uint64
}

// uringCQE is struct io_uring_cqe.
type uringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// sendRing is an io_uring instance for sends, used by one worker at a time.
type sendRing struct {
	fd             int
	maps           [3][]byte
	sqHead, sqTail *uint32
	sqMask         uint32
	sqArray        []uint32
	sqes           []uringSQE
	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []uringCQE
}

// newSendRing sets up a ring for up to entries sends at a time.
func newSendRing(entries uint32) (*sendRing, error) {
	var p uringParams
	fd, _, errno := syscall.Syscall(sysIOUringSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &sendRing{fd: int(fd)}
	syscall.CloseOnExec(r.fd)
	sizes := [3]int{
		int(p.sqOff.array + p.sqEntries*4),
		int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(uringCQE{})),
		int(p.sqEntries) * int(unsafe.Sizeof(uringSQE{})),
	}
	for i, off := range [3]int64{ioringOffSQRing, ioringOffCQRing, ioringOffSQEs} {
		m, err := syscall.Mmap(r.fd, off, sizes[i], syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("io_uring mmap: %w", err)
		}
		r.maps[i] = m
	}
	sq, cq, sqes := r.maps[0], r.maps[1], r.maps[2]
	r.sqHead = (*uint32)(unsafe.Pointer(&sq[p.sqOff.head]))
	r.sqTail = (*uint32)(unsafe.Pointer(&sq[p.sqOff.tail]))
	r.sqMask = *(*uint32)(unsafe.Pointer(&sq[p.sqOff.ringMask]))
	r.sqArray = unsafe.Slice((*uint32)(unsafe.Pointer(&sq[p.sqOff.array])), p.sqEntries)
	r.sqes = unsafe.Slice((*uringSQE)(unsafe.Pointer(&sqes[0])), p.sqEntries)
	r.cqHead = (*uint32)(unsafe.Pointer(&cq[p.cqOff.head]))
	r.cqTail = (*uint32)(unsafe.Pointer(&cq[p.cqOff.tail]))
	r.cqMask = *(*uint32)(unsafe.Pointer(&cq[p.cqOff.ringMask]))
	r.cqes = unsafe.Slice((*uringCQE)(unsafe.Pointer(&cq[p.cqOff.cqes])), p.cqEntries)
	return r, nil
}

// close unmaps the ring and closes it; the kernel cancels what is left.
func (r *sendRing) close() {
	for i, m := range r.maps {
		if m != nil {
			_ = syscall.Munmap(m)
			r.maps[i] = nil
		}
	}
	_ = syscall.Close(r.fd)
}

// errRingBroken says that a submission failed in a way that leaves its
// sends' fate unknown.
var errRingBroken = errors.New("io_uring submission failed")

// send sends bufs[i] on the socket fds[i], all in one submission (len(fds)
// must not exceed the ring's entries), and sets res[i] to the bytes sent
// or to minus the errno. With wait false it returns as soon as the
// submission does, and reports whether every send had completed by then.
// An error means the ring must not be used again, and that the sends
// whose res is -EIO may or may not have happened.
func (r *sendRing) send(fds []int32, bufs [][]byte, res []int32, wait bool) (complete bool, err error) {
	n := uint32(len(fds))
	tail := atomic.LoadUint32(r.sqTail)
	for i := range n {
		idx := (tail + i) & r.sqMask
		r.sqes[idx] = uringSQE{
			opcode:   ioringOpSend,
			fd:       fds[i],
			addr:     uint64(uintptr(unsafe.Pointer(unsafe.SliceData(bufs[i])))),
			len:      uint32(len(bufs[i])),
			msgFlags: syscall.MSG_DONTWAIT | syscall.MSG_NOSIGNAL,
			userData: uint64(i),
		}
		r.sqArray[idx] = idx
		res[i] = -int32(syscall.EIO)
	}
	atomic.StoreUint32(r.sqTail, tail+n)
	defer runtime.KeepAlive(bufs)
	done := uint32(0)
	for tries := 0; ; tries++ {
		if tries == maxEnterTries {
			return false, fmt.Errorf("%w: no progress in %d calls", errRingBroken, tries)
		}
		pending := atomic.LoadUint32(r.sqTail) - atomic.LoadUint32(r.sqHead)
		minComplete := uint32(0)
		if wait {
			minComplete = n - done
		}
		_, _, errno := syscall.Syscall6(sysIOUringEnter, uintptr(r.fd), uintptr(pending), uintptr(minComplete), ioringEnterGetEvents, 0, 0)
		switch errno {
		case 0, syscall.EINTR:
		case syscall.EAGAIN, syscall.EBUSY:
			// Short of resources, or completions to reap first: reap,
			// then go on.
		default:
			return false, fmt.Errorf("%w: io_uring_enter: %w", errRingBroken, errno)
		}
		head := atomic.LoadUint32(r.cqHead)
		for ctail := atomic.LoadUint32(r.cqTail); head != ctail; head++ {
			c := &r.cqes[head&r.cqMask]
			if c.userData < uint64(n) {
				res[c.userData] = c.res
				done++
			}
		}
		atomic.StoreUint32(r.cqHead, head)
		if done == n {
			return true, nil
		}
		if !wait {
			return false, nil
		}
	}
}

// maxEnterTries bounds the io_uring_enter calls of one send: each is
// interrupted, or short of resources, only now and then.
const maxEnterTries = 1000

// probe is what the self-test sends; a package variable, so that it
// outlives a send the kernel might still hold when the ring is closed.
var probe [1]byte

// selfTest checks that r sends as this package needs: to a socket with no
// room, at once with EAGAIN rather than a send the kernel finishes later;
// to one with room, at once and whole.
func (r *sendRing) selfTest() error {
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	defer syscall.Close(pair[0])
	defer syscall.Close(pair[1])
	fill := make([]byte, 64<<10)
	for {
		_, err := syscall.Write(pair[0], fill)
		if err == syscall.EAGAIN {
			break
		}
		if err != nil {
			return fmt.Errorf("filling a socket: %w", err)
		}
	}
	fds, bufs, res := []int32{int32(pair[0])}, [][]byte{probe[:]}, []int32{0}
	complete, err := r.send(fds, bufs, res, false)
	switch {
	case err != nil:
		return err
	case !complete:
		return errors.New("a send to a full socket waits instead of failing with EAGAIN")
	case res[0] != -int32(syscall.EAGAIN):
		return fmt.Errorf("a send to a full socket answered %d, not EAGAIN", res[0])
	}
	for {
		if _, err := syscall.Read(pair[1], fill); err != nil {
			break // emptied (EAGAIN)
		}
	}
	complete, err = r.send(fds, bufs, res, false)
	switch {
	case err != nil:
		return err
	case !complete || res[0] != 1:
		return fmt.Errorf("a send to a socket with room did not complete at once (%v, %d)", complete, res[0])
	}
	return nil
}

// ringEntries is the size of each ring: a flusher chunk.
const ringEntries = flushChunk

// The process's rings. Workers take one for as long as they run and give
// it back; there are at most as many as workers ever ran at once (capped
// at maxRings: past that a worker writes socket by socket).
var rings struct {
	once sync.Once
	err  error // why io_uring is not used, once known
	// failed is set when a submission failed: from then on workers write
	// with write(2).
	failed atomic.Bool
	mu     sync.Mutex
	free   []*sendRing
	made   int
	// kept are the buffers of failed submissions, never reused: a send
	// the kernel still held could otherwise read another's bytes.
	kept []*wire
}

// maxRings bounds the process's rings.
func maxRings() int { return 2 * runtime.GOMAXPROCS(0) }

// uringError reports why the flusher writes socket by socket rather than
// through io_uring, or nil when it uses io_uring.
func uringError() error {
	rings.once.Do(func() {
		r, err := newSendRing(ringEntries)
		if err == nil {
			if err = r.selfTest(); err != nil {
				r.close()
			}
		}
		if err != nil {
			rings.err = err
			return
		}
		rings.free = append(rings.free, r)
		rings.made = 1
	})
	if rings.err == nil && rings.failed.Load() {
		return errUringFailed
	}
	return rings.err
}

// errUringFailed is why io_uring is not used after a submission failed.
var errUringFailed = errors.New("an io_uring submission failed; writes went back to write(2)")

// getRing returns a ring for a worker, or nil: no io_uring here, or as
// many rings as allowed are in use.
func getRing() *sendRing {
	if uringError() != nil {
		return nil
	}
	rings.mu.Lock()
	if n := len(rings.free); n > 0 {
		r := rings.free[n-1]
		rings.free = rings.free[:n-1]
		rings.mu.Unlock()
		return r
	}
	if rings.made >= maxRings() {
		rings.mu.Unlock()
		return nil
	}
	rings.made++
	rings.mu.Unlock()
	r, err := newSendRing(ringEntries)
	if err != nil {
		rings.mu.Lock()
		rings.made--
		rings.mu.Unlock()
		return nil
	}
	return r
}

// putRing gives r back. A broken ring is closed instead, io_uring is
// not used again, and the buffers of its last submission are kept for
// good.
func putRing(r *sendRing, broken bool, bufs ...*wire) {
	if broken {
		r.close()
		rings.failed.Store(true)
		rings.mu.Lock()
		rings.made--
		rings.kept = append(rings.kept, bufs...)
		rings.mu.Unlock()
		return
	}
	rings.mu.Lock()
	rings.free = append(rings.free, r)
	rings.mu.Unlock()
}
