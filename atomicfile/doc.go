// Package atomicfile writes a file so that readers see the old content or
// the whole new content, never a half-written file.
package atomicfile
