// Package fpart is krsync's fpart(1)-compatible partitioner: it walks a source tree the way
// fpart does (fts order, fpart's -f/-s/-n/-L/-z/-E/-x/-y/-b options and output formats) and
// hands out partitions while it walks, reading directories concurrently but deterministically,
// with every path of a hard-linked inode in one partition and names of any bytes. It does not
// copy anything, know about leases or rsync, or follow symbolic links.
//
// walk.go is one cohesive thing over 400 lines: the fts-order walk with its concurrent,
// deterministic directory reads; partition.go packs what it finds.
package fpart
