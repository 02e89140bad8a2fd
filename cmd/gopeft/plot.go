package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
)

// lossPNG draws the loss curves (one color per series, log scale when the
// values span more than a decade) on a white canvas with axes, and writes it
// atomically to path. Pure image/png: no plotting dependency.
func lossPNG(path string, series ...[]float64) error {
	const w, h, margin = 640, 400, 40
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	lo, hi, n := math.Inf(1), math.Inf(-1), 0
	for _, s := range series {
		n = max(n, len(s))
		for _, v := range s {
			if v > 0 && !math.IsInf(v, 0) && !math.IsNaN(v) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if n < 2 || math.IsInf(lo, 1) {
		return fmt.Errorf("loss curve: need at least two finite positive values")
	}
	logScale := hi/lo > 10
	tf := func(v float64) float64 {
		if logScale {
			return math.Log10(v)
		}
		return v
	}
	ylo, yhi := tf(lo), tf(hi)
	if yhi == ylo {
		yhi = ylo + 1
	}
	gray := color.RGBA{0x80, 0x80, 0x80, 0xff}
	for x := margin; x < w-margin/2; x++ {
		img.Set(x, h-margin, gray)
	}
	for y := margin / 2; y <= h-margin; y++ {
		img.Set(margin, y, gray)
	}
	if logScale { // a tick per decade
		for d := math.Ceil(ylo); d <= yhi; d++ {
			y := h - margin - int((d-ylo)/(yhi-ylo)*float64(h-margin*3/2))
			for x := margin - 4; x < w-margin/2; x += 3 {
				img.Set(x, y, color.RGBA{0xd0, 0xd0, 0xd0, 0xff})
			}
		}
	}
	colors := []color.RGBA{{0x1f, 0x77, 0xb4, 0xff}, {0xd6, 0x27, 0x28, 0xff}, {0x2c, 0xa0, 0x2c, 0xff}}
	for si, s := range series {
		c := colors[si%len(colors)]
		px, py := -1, -1
		for i, v := range s {
			if !(v > 0) || math.IsInf(v, 0) {
				continue
			}
			x := margin + int(float64(i)/float64(n-1)*float64(w-margin*3/2))
			y := h - margin - int((tf(v)-ylo)/(yhi-ylo)*float64(h-margin*3/2))
			if px >= 0 {
				line(img, px, py, x, y, c)
			}
			px, py = x, y
		}
	}
	// Labels: the value range on the y axis, the step range on the x axis,
	// a legend.
	black := color.RGBA{0x30, 0x30, 0x30, 0xff}
	drawText(img, 2, margin/2-2, fmt.Sprintf("%.3g", hi), black)
	drawText(img, 2, h-margin-6, fmt.Sprintf("%.3g", lo), black)
	drawText(img, margin, h-margin+6, "1", black)
	drawText(img, w-margin/2-4*len(fmt.Sprint(n)), h-margin+6, fmt.Sprint(n), black)
	drawText(img, w/2-20, h-margin+6, "step", black)
	scale := "loss"
	if logScale {
		scale = "loss (log)"
	}
	drawText(img, margin+8, margin/2-2, scale, black)
	for si, name := range []string{"train", "eval"}[:min(2, len(series))] {
		c := colors[si%len(colors)]
		x := w - margin - 60
		y := margin/2 + 10*si
		line(img, x, y+2, x+10, y+2, c)
		drawText(img, x+14, y, name, black)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return err
	}
	return writeFileAtomic(path, buf.Bytes())
}

// line draws a segment (Bresenham), two pixels thick.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	err := dx + dy
	for {
		img.Set(x0, y0, c)
		img.Set(x0, y0+1, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * err
		if e2 >= dy {
			err += dy
			x0 += sx
		}
		if e2 <= dx {
			err += dx
			y0 += sy
		}
	}
}

func abs(a int) int {
	if a < 0 {
		return -a
	}
	return a
}

func sign(a int) int {
	switch {
	case a < 0:
		return -1
	case a > 0:
		return 1
	}
	return 0
}

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it over path.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// glyphs is a 3x5 pixel font for the labels: each glyph is five rows of three
// bits, top row first, leftmost pixel in the high bit.
var glyphs = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7},
	'4': {5, 5, 7, 1, 1}, '5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 1, 1},
	'8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7}, '.': {0, 0, 0, 0, 2}, '-': {0, 0, 7, 0, 0},
	'+': {0, 2, 7, 2, 0}, 'e': {0, 7, 7, 4, 7}, 'a': {0, 6, 1, 7, 7}, 'i': {2, 0, 2, 2, 2},
	'l': {2, 2, 2, 2, 3}, 'n': {0, 6, 5, 5, 5}, 'o': {0, 7, 5, 5, 7}, 'p': {0, 7, 5, 7, 4},
	'r': {0, 6, 4, 4, 4}, 's': {0, 7, 6, 1, 7}, 't': {2, 7, 2, 2, 3}, 'v': {0, 5, 5, 5, 2},
	'g': {0, 7, 5, 7, 1}, '(': {1, 2, 2, 2, 1}, ')': {4, 2, 2, 2, 4}, ' ': {},
}

// drawText writes s with its top-left corner at (x, y), each font pixel a
// 1x1 dot, glyphs 4 pixels apart.
func drawText(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for _, r := range s {
		g := glyphs[r]
		for row, bits := range g {
			for col := range 3 {
				if bits&(4>>col) != 0 {
					img.Set(x+col, y+row, c)
				}
			}
		}
		x += 4
	}
}
