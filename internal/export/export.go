// Package export writes tables as downloads: CSV (RFC 4180) or JSON lines,
// UTF-8, one row at a time, so that a download of a million rows holds one
// row in memory. The domains (analytics, reward) produce the rows; the API
// serves them over HTTP and as a streaming RPC.
package export

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Format is the file format of a download.
type Format int

// Formats.
const (
	CSV Format = iota
	JSONLines
)

// Extension is the file name extension of the format.
func (f Format) Extension() string {
	if f == JSONLines {
		return "jsonl"
	}
	return "csv"
}

// ContentType is the HTTP media type of the format.
func (f Format) ContentType() string {
	if f == JSONLines {
		return "application/jsonl; charset=utf-8"
	}
	return "text/csv; charset=utf-8"
}

// BOM is the UTF-8 byte order mark: Excel reads a CSV starting with it as
// UTF-8 instead of the system's code page (which garbles "é").
const BOM = "\uFEFF"

// FlushEvery is how many rows are written between two flushes of the
// buffers to the client: a client sees the download progress and the
// server never holds more than this many rows' bytes.
const FlushEvery = 500

// Options are how a table is written.
type Options struct {
	Format Format
	// BOM starts a CSV with the UTF-8 byte order mark (for Excel).
	BOM bool
}

// Writer writes one table. Cells are Go values: string, bool, int, int32,
// int64, float64, time.Time (RFC 3339, UTC), Date (YYYY-MM-DD), or nil
// (empty; null in JSON lines).
type Writer struct {
	opts    Options
	columns []string
	buf     *bufio.Writer
	csv     *csv.Writer
	flush   func() error
	rows    int
	started bool
	line    []byte
	record  []string
}

// Date is a calendar date cell (YYYY-MM-DD); the zero Date is empty.
type Date time.Time

// NewWriter returns a writer of a table with these columns to w; flush (may
// be nil) is called after each FlushEvery rows, once the bytes are written
// to w (an HTTP handler passes its Flusher's Flush).
func NewWriter(w io.Writer, columns []string, o Options, flush func() error) *Writer {
	bw := bufio.NewWriterSize(w, 32<<10)
	out := &Writer{opts: o, columns: columns, buf: bw, flush: flush, record: make([]string, len(columns))}
	if o.Format == CSV {
		out.csv = csv.NewWriter(bw)
		out.csv.UseCRLF = true
	}
	return out
}

// Started reports whether the header (and so the first bytes) was written.
func (w *Writer) Started() bool { return w.started }

// Rows is the number of rows written.
func (w *Writer) Rows() int { return w.rows }

// Start writes the header (CSV) once; Row calls it itself.
func (w *Writer) Start() error {
	if w.started {
		return nil
	}
	w.started = true
	if w.csv == nil {
		return nil
	}
	if w.opts.BOM {
		if _, err := w.buf.WriteString(BOM); err != nil {
			return err
		}
	}
	return w.csv.Write(w.columns)
}

// Row writes one row; it has as many cells as there are columns.
func (w *Writer) Row(cells ...any) error {
	if len(cells) != len(w.columns) {
		return fmt.Errorf("export: %d cells for %d columns", len(cells), len(w.columns))
	}
	if err := w.Start(); err != nil {
		return err
	}
	if w.csv != nil {
		for i, c := range cells {
			w.record[i] = csvCell(c)
		}
		if err := w.csv.Write(w.record); err != nil {
			return err
		}
	} else if err := w.jsonRow(cells); err != nil {
		return err
	}
	w.rows++
	if w.rows%FlushEvery == 0 {
		return w.Flush()
	}
	return nil
}

// Flush sends what is buffered to the client.
func (w *Writer) Flush() error {
	if w.csv != nil {
		w.csv.Flush()
		if err := w.csv.Error(); err != nil {
			return err
		}
	}
	if err := w.buf.Flush(); err != nil {
		return err
	}
	if w.flush != nil {
		return w.flush()
	}
	return nil
}

// Close writes the header if no row came, and flushes.
func (w *Writer) Close() error {
	if err := w.Start(); err != nil {
		return err
	}
	return w.Flush()
}

func (w *Writer) jsonRow(cells []any) error {
	b := w.line[:0]
	b = append(b, '{')
	for i, c := range cells {
		if i > 0 {
			b = append(b, ',')
		}
		name, _ := json.Marshal(w.columns[i])
		b = append(b, name...)
		b = append(b, ':')
		v, err := jsonCell(c)
		if err != nil {
			return err
		}
		b = append(b, v...)
	}
	b = append(b, '}', '\n')
	w.line = b
	_, err := w.buf.Write(b)
	return err
}

func jsonCell(c any) ([]byte, error) {
	switch v := c.(type) {
	case nil:
		return []byte("null"), nil
	case time.Time:
		if v.IsZero() {
			return []byte("null"), nil
		}
		return json.Marshal(v.UTC().Format(time.RFC3339Nano))
	case Date:
		if time.Time(v).IsZero() {
			return []byte("null"), nil
		}
		return json.Marshal(time.Time(v).Format(time.DateOnly))
	case float64:
		return []byte(strconv.FormatFloat(v, 'g', -1, 64)), nil
	}
	return json.Marshal(c)
}

// csvCell is a cell's text. A text that a spreadsheet would run as a
// formula (starting with "=", "+", "-", "@", tab or CR) is prefixed with
// "'" (OWASP's CSV injection advice); numbers are written as numbers.
func csvCell(c any) string {
	switch v := c.(type) {
	case nil:
		return ""
	case string:
		if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
			return "'" + v
		}
		return v
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case time.Time:
		if v.IsZero() {
			return ""
		}
		return v.UTC().Format(time.RFC3339Nano)
	case Date:
		if time.Time(v).IsZero() {
			return ""
		}
		return time.Time(v).Format(time.DateOnly)
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(c)
}
