# syntax=docker/dockerfile:1
# QuantumReview: one process (web server + job runner) and one SQLite file on the /data volume.
# CPython 3.13 is past 3.11.8, the zip-overlap fix (CVE-2024-0450) the artifact reader relies on. Its SQLite is
# Debian's (3.46.1 in trixie), older than the WAL-reset fix (3.51.3): the server writes and checkpoints on one
# connection, safe on its own, and warns at start (storage/sqlite_gate.py).
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The server runs as this unprivileged user (uid 10001), never as root.
RUN groupadd --system --gid 10001 quantumreview \
 && useradd --system --uid 10001 --gid quantumreview --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin quantumreview \
 && mkdir -p /data \
 && chown quantumreview:quantumreview /data

WORKDIR /src
COPY pyproject.toml README.md ./
COPY quantumreview ./quantumreview
COPY handlers ./handlers
COPY storage ./storage
RUN pip install . \
 && cd / \
 && rm -rf /src

WORKDIR /data
# MALLOC_MMAP_THRESHOLD_: glibc serves every allocation over 128 KiB with its own mmap and gives it back when
# freed. By default it raises that threshold after the first such free, and a large delivery's buffers then stay
# in the heap: peak RSS for eight 20 MiB deliveries one after another was 503 MiB, 423 MiB with this
# (bench/large_deliveries.py --one-by-one; the machine has 512 MB).
ENV HOST=0.0.0.0 \
    PORT=8080 \
    DATABASE_PATH=/data/quantumreview.db \
    MALLOC_MMAP_THRESHOLD_=131072
EXPOSE 8080
VOLUME ["/data"]

# No curl in slim images: ask /health with the standard library; a non-2xx answer raises and fails the check.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/health', timeout=4)"]

# Volumes (Fly, bind mounts) arrive owned by root: when started as root, hand /data to uid 10001 and drop to it
# before the server starts; when started with --user, just run the command.
ENTRYPOINT ["/bin/sh", "-c", "if [ \"$(id -u)\" = 0 ]; then chown -R 10001:10001 /data && exec python -c 'import os, sys; os.setgroups([]); os.setgid(10001); os.setuid(10001); os.execvp(sys.argv[1], sys.argv[1:])' \"$@\"; fi; exec \"$@\"", "entrypoint"]
CMD ["quantumreview", "serve"]
