#!/usr/bin/python3
# Packs a charm tree into a .charm zip byte-for-byte reproducibly: sorted entries,
# fixed timestamps, Unix modes kept (execute bits on dispatch and binaries).
import os
import stat
import sys
import zipfile

EPOCH = (1980, 1, 1, 0, 0, 0)


def pack(src, out):
    entries = []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            entries.append((os.path.relpath(path, src), path))
    tmp = out + ".tmp"
    with zipfile.ZipFile(tmp, "w") as z:
        for rel, path in sorted(entries):
            st = os.lstat(path)
            info = zipfile.ZipInfo(rel, date_time=EPOCH)
            info.create_system = 3  # Unix: external_attr carries the mode
            if stat.S_ISLNK(st.st_mode):
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                z.writestr(info, os.readlink(path))
                continue
            mode = 0o755 if st.st_mode & 0o111 else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                z.writestr(info, f.read(), compresslevel=9)
    os.replace(tmp, out)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: pack-charm.py <charm-tree> <out.charm>")
    pack(sys.argv[1], sys.argv[2])
