package fpart

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
)

// Printer writes partitions in fpart's output formats: on stdout one
// "number<TAB>size<TAB>path" line per entry (-o - or no -o), or with -o PREFIX one file
// PREFIX.number per partition holding its paths; and fpart's "Part #N: size = S, files = F"
// line per partition on the summary writer. Numbers are fpart's: from 1, and 0 for the
// oversized partition of non-live -s. With -0, entries end with NUL instead of a newline
// (on stdout too, so that names with newlines survive); with -e, directories end with '/'.
type Printer struct {
	opts    Options
	roots   []string
	out     *bufio.Writer
	summary io.Writer
	number  int
}

// NewPrinter returns a Printer for partitions of a walk of roots with opts.
func NewPrinter(opts Options, roots []string, stdout, summary io.Writer) *Printer {
	return &Printer{opts: opts, roots: roots, out: bufio.NewWriterSize(stdout, 64<<10), summary: summary}
}

// Print writes one partition, flushing it so that a reader sees it at once.
func (p *Printer) Print(part Partition) error {
	number := 0
	if !part.Oversized {
		p.number++
		number = p.number
	}
	end := byte('\n')
	if p.opts.NulTerminated {
		end = 0
	}
	if p.opts.Output == "" || p.opts.Output == "-" {
		prefix := strconv.Itoa(number) + "\t"
		var digits [20]byte
		for _, e := range part.Entries {
			p.out.WriteString(prefix)
			p.out.Write(strconv.AppendInt(digits[:0], e.Size, 10))
			p.out.WriteByte('\t')
			p.writePath(p.out, e)
			p.out.WriteByte(end)
		}
		if err := p.out.Flush(); err != nil {
			return fmt.Errorf("write partition %d: %w", number, err)
		}
	} else if err := p.writeFile(number, part, end); err != nil {
		return err
	}
	if p.summary != nil {
		if _, err := fmt.Fprintf(p.summary, "Part #%d: size = %d, files = %d\n", number, part.Bytes, len(part.Entries)); err != nil {
			return fmt.Errorf("write summary: %w", err)
		}
	}
	return nil
}

func (p *Printer) writeFile(number int, part Partition, end byte) error {
	name := p.opts.Output + "." + strconv.Itoa(number)
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o660)
	if err != nil {
		return fmt.Errorf("partition file: %w", err)
	}
	w := bufio.NewWriterSize(f, 64<<10)
	for _, e := range part.Entries {
		p.writePath(w, e)
		w.WriteByte(end)
	}
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("partition file %s: %w", name, err)
	}
	return nil
}

func (p *Printer) writePath(w *bufio.Writer, e Entry) {
	root := ""
	if e.Root < len(p.roots) {
		root = p.roots[e.Root]
	}
	// FullPath without building the string.
	last := byte(0)
	switch {
	case e.Path == ".":
		w.WriteString(root)
		if root != "" {
			last = root[len(root)-1]
		}
	default:
		w.WriteString(root)
		if root != "" && root[len(root)-1] != '/' {
			w.WriteByte('/')
		}
		w.WriteString(e.Path)
		last = e.Path[len(e.Path)-1]
	}
	if p.opts.TrailingSlash && e.Dir && last != 0 && last != '/' {
		w.WriteByte('/')
	}
}
