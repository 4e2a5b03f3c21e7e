//go:build linux

package localshell

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestApplyModes(t *testing.T) {
	tio := unix.Termios{Lflag: unix.ECHO | unix.ICANON, Oflag: unix.OPOST}
	applyModes(&tio, []termMode{
		{53, 0},      // ECHO off
		{59, 1},      // IEXTEN on
		{1, 3},       // VINTR ^C
		{4, 255},     // VKILL disabled
		{42, 1},      // IUTF8
		{72, 1},      // ONLCR
		{128, 38400}, // speeds are ignored
		{11, 25},     // VDSUSP: none on Linux, ignored
	})
	if tio.Lflag != unix.ICANON|unix.IEXTEN {
		t.Errorf("lflag = %#o", tio.Lflag)
	}
	if tio.Oflag != unix.OPOST|unix.ONLCR {
		t.Errorf("oflag = %#o", tio.Oflag)
	}
	if tio.Iflag != unix.IUTF8 {
		t.Errorf("iflag = %#o", tio.Iflag)
	}
	if tio.Cc[unix.VINTR] != 3 || tio.Cc[unix.VKILL] != 0 {
		t.Errorf("cc = %v", tio.Cc)
	}
}
