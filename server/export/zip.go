package export

import (
	"bufio"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"os"
	"sync"
	"time"
)

// zipWriter streams a ZIP archive. archive/zip keeps the header of every entry in memory
// until it writes the central directory at the end; the JSON export has an entry per
// observation, so that directory grows with the rows (about 300 bytes each there). This
// writer spools the directory records (about 100 bytes an entry) to a temporary file
// instead and copies them to the output at the end, so memory stays flat whatever the
// number of entries. Entries are deflated and followed by a data descriptor; ZIP64 records
// are written when sizes, offsets or the entry count need them.
type zipWriter struct {
	out      *bufio.Writer
	offset   uint64 // bytes written to out
	dir      *os.File
	dirBuf   *bufio.Writer
	entries  uint64
	dosTime  uint16
	dosDate  uint16
	level    int
	cur      *zipEntry
	flateBuf *flate.Writer
}

type zipEntry struct {
	name   string
	offset uint64
	crc    hash.Hash32
	size   uint64 // uncompressed
	start  uint64 // offset of the compressed data
}

const (
	zipVersion20 = 20
	zipVersion45 = 45          // ZIP64
	zipFlags     = 0x8 | 0x800 // sizes in a data descriptor; UTF-8 names
	zipDeflate   = 8
	uint32max    = math.MaxUint32
	uint16max    = math.MaxUint16
)

// newZipWriter starts an archive on out whose entries carry the time modified and are
// deflated at level, flate.BestSpeed or flate.NoCompression (which stores already compressed data in stored blocks:
// cheap, and unlike the Store method readable by every unzip when followed by a data
// descriptor).
func newZipWriter(out io.Writer, modified time.Time, level int) (*zipWriter, error) {
	dir, err := os.CreateTemp("", "synkronus-export-*.zipdir")
	if err != nil {
		return nil, fmt.Errorf("error creating the archive's directory file: %w", err)
	}
	_ = os.Remove(dir.Name()) // unlinked: the space is freed when the file is closed, also after a crash
	z := &zipWriter{out: bufio.NewWriterSize(out, 64<<10), dir: dir, dirBuf: bufio.NewWriterSize(dir, 32<<10), level: level}
	m := modified.UTC()
	z.dosDate = uint16(m.Day() + int(m.Month())<<5 + (max(m.Year(), 1980)-1980)<<9)
	z.dosTime = uint16(m.Second()/2 + m.Minute()<<5 + m.Hour()<<11)
	return z, nil
}

// discard releases the directory file; the archive is left incomplete.
func (z *zipWriter) discard() {
	_ = z.dir.Close()
	if z.flateBuf != nil {
		putFlate(z.level, z.flateBuf)
		z.flateBuf = nil
	}
}

func (z *zipWriter) write(p []byte) error {
	_, err := (*zipCounter)(z).Write(p)
	return err
}

// create starts an entry named name (a slash-separated relative path); the returned
// writer is valid until the next create or close.
func (z *zipWriter) create(name string) (io.Writer, error) {
	if err := z.finish(); err != nil {
		return nil, err
	}
	e := &zipEntry{name: name, offset: z.offset, crc: crc32.NewIEEE()}
	h := make([]byte, 30, 30+len(name))
	le := binary.LittleEndian
	le.PutUint32(h[0:], 0x04034b50)
	le.PutUint16(h[4:], zipVersion20)
	le.PutUint16(h[6:], zipFlags)
	le.PutUint16(h[8:], zipDeflate)
	le.PutUint16(h[10:], z.dosTime)
	le.PutUint16(h[12:], z.dosDate)
	// CRC and sizes (14..25) stay zero: they follow the data in the descriptor.
	le.PutUint16(h[26:], uint16(len(name)))
	if err := z.write(append(h, name...)); err != nil {
		return nil, err
	}
	e.start = z.offset
	z.flateBuf = getFlate(z.level, (*zipCounter)(z))
	z.cur = e
	return entryWriter{z}, nil
}

// zipCounter is the archive's output as seen by the compressor.
type zipCounter zipWriter

func (c *zipCounter) Write(p []byte) (int, error) {
	z := (*zipWriter)(c)
	n, err := z.out.Write(p)
	z.offset += uint64(n)
	return n, err
}

type entryWriter struct{ z *zipWriter }

func (w entryWriter) Write(p []byte) (int, error) {
	e := w.z.cur
	e.crc.Write(p)
	e.size += uint64(len(p))
	return w.z.flateBuf.Write(p)
}

// finish completes the current entry: the compressed data, its descriptor and its
// directory record.
func (z *zipWriter) finish() error {
	e := z.cur
	if e == nil {
		return nil
	}
	z.cur = nil
	err := z.flateBuf.Close()
	putFlate(z.level, z.flateBuf)
	z.flateBuf = nil
	if err != nil {
		return err
	}
	csize := z.offset - e.start
	crc := e.crc.Sum32()
	zip64 := e.size >= uint32max || csize >= uint32max
	le := binary.LittleEndian
	var d []byte
	if zip64 {
		d = le.AppendUint32(le.AppendUint32(nil, 0x08074b50), crc)
		d = le.AppendUint64(le.AppendUint64(d, csize), e.size)
	} else {
		d = le.AppendUint32(le.AppendUint32(nil, 0x08074b50), crc)
		d = le.AppendUint32(le.AppendUint32(d, uint32(csize)), uint32(e.size))
	}
	if err := z.write(d); err != nil {
		return err
	}
	return z.record(e, crc, csize, zip64 || e.offset >= uint32max)
}

// record spools the entry's central directory record.
func (z *zipWriter) record(e *zipEntry, crc uint32, csize uint64, zip64 bool) error {
	le := binary.LittleEndian
	version := uint16(zipVersion20)
	sizes := [3]uint32{uint32(csize), uint32(e.size), uint32(e.offset)}
	var extra []byte
	if zip64 {
		version = zipVersion45
		sizes = [3]uint32{uint32max, uint32max, uint32max}
		extra = le.AppendUint16(le.AppendUint16(nil, 0x0001), 24)
		extra = le.AppendUint64(le.AppendUint64(le.AppendUint64(extra, e.size), csize), e.offset)
	}
	r := make([]byte, 46, 46+len(e.name)+len(extra))
	le.PutUint32(r[0:], 0x02014b50)
	le.PutUint16(r[4:], version) // made by: MS-DOS attributes, this version
	le.PutUint16(r[6:], version)
	le.PutUint16(r[8:], zipFlags)
	le.PutUint16(r[10:], zipDeflate)
	le.PutUint16(r[12:], z.dosTime)
	le.PutUint16(r[14:], z.dosDate)
	le.PutUint32(r[16:], crc)
	le.PutUint32(r[20:], sizes[0])
	le.PutUint32(r[24:], sizes[1])
	le.PutUint16(r[28:], uint16(len(e.name)))
	le.PutUint16(r[30:], uint16(len(extra)))
	// comment length, disk number, internal and external attributes stay zero
	le.PutUint32(r[42:], sizes[2])
	r = append(append(r, e.name...), extra...)
	if _, err := z.dirBuf.Write(r); err != nil {
		return fmt.Errorf("error spooling the archive's directory: %w", err)
	}
	z.entries++
	return nil
}

// close writes the central directory and the end records, and flushes the output.
func (z *zipWriter) close() error {
	defer z.discard()
	if err := z.finish(); err != nil {
		return err
	}
	if err := z.dirBuf.Flush(); err != nil {
		return fmt.Errorf("error spooling the archive's directory: %w", err)
	}
	if _, err := z.dir.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("error reading the archive's directory: %w", err)
	}
	dirStart := z.offset
	if _, err := io.Copy((*zipCounter)(z), z.dir); err != nil {
		return err
	}
	dirEnd := z.offset
	dirSize := dirEnd - dirStart
	le := binary.LittleEndian
	count, size, start := uint16(z.entries), uint32(dirSize), uint32(dirStart)
	if z.entries >= uint16max || dirSize >= uint32max || dirStart >= uint32max {
		count, size, start = uint16max, uint32max, uint32max
		r := le.AppendUint32(nil, 0x06064b50)
		r = le.AppendUint64(r, 44)
		r = le.AppendUint16(le.AppendUint16(r, zipVersion45), zipVersion45)
		r = le.AppendUint32(le.AppendUint32(r, 0), 0)
		r = le.AppendUint64(le.AppendUint64(r, z.entries), z.entries)
		r = le.AppendUint64(le.AppendUint64(r, dirSize), dirStart)
		r = le.AppendUint32(r, 0x07064b50) // locator
		r = le.AppendUint64(le.AppendUint32(r, 0), dirEnd)
		r = le.AppendUint32(r, 1)
		if err := z.write(r); err != nil {
			return err
		}
	}
	r := le.AppendUint32(nil, 0x06054b50)
	r = le.AppendUint16(le.AppendUint16(r, 0), 0)
	r = le.AppendUint16(le.AppendUint16(r, count), count)
	r = le.AppendUint32(le.AppendUint32(r, size), start)
	r = le.AppendUint16(r, 0)
	if err := z.write(r); err != nil {
		return err
	}
	return z.out.Flush()
}

// Compressors are pooled: each holds several hundred KiB, and the JSON export starts one
// for every observation. Archives use two levels, flate.NoCompression and flate.BestSpeed.
var flatePools [2]sync.Pool

func getFlate(level int, w io.Writer) *flate.Writer {
	if fw, ok := flatePools[level].Get().(*flate.Writer); ok {
		fw.Reset(w)
		return fw
	}
	fw, _ := flate.NewWriter(w, level) // fails only for a level outside -2..9
	return fw
}

func putFlate(level int, fw *flate.Writer) { flatePools[level].Put(fw) }
