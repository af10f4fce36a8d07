package cli

import (
	"fmt"
	"io"
)

// printer writes formatted output and keeps the first write error, which
// the command returns once it is done (a closed pipe, a full disk).
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}
