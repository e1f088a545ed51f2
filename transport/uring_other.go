//go:build !linux

package transport

import "errors"

// sendRing is Linux's io_uring; elsewhere workers write socket by socket.
type sendRing struct{}

func (*sendRing) send([]int32, [][]byte, []int32, bool) (bool, error) {
	return false, errors.ErrUnsupported
}

func uringError() error { return errors.New("io_uring is Linux's") }

func getRing() *sendRing { return nil }

func putRing(*sendRing, bool, ...*wire) {}
