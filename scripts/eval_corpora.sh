#!/usr/bin/env bash
# Install and lay out the four retrieval-evaluation corpora (issue 5 and 14: `rag eval`).
#
# Usage: scripts/eval_corpora.sh [OUTDIR]
#
# 1. Installs the Debian packages sqlite3-doc, gnuplot-doc, debian-edu-doc-zh-cn and linuxcnc-doc-zh-cn
#    with apt-get if they are missing
#    (runs `apt-get update` only if the first install attempt fails; uses sudo when not root).
# 2. Finds each package's documents with `dpkg -L`:
#      sqlite3-doc  HTML site, /usr/share/doc/sqlite3/ on Debian 12 (lang_*.html, c3ref/, syntax/, ...)
#      gnuplot-doc  PDF manual, /usr/share/doc/gnuplot/gnuplot.pdf (gzip-compressed in some releases)
#      debian-edu-doc-zh-cn  the Debian Edu manuals in Chinese (HTML, PDF, EPUB, bookworm and bullseye)
#      linuxcnc-doc-zh-cn    LinuxCNC's manuals, /usr/share/doc/linuxcnc/*_zh_CN.{pdf,html}; in Debian 12 (2.9.0~pre1)
#                            their text is English (the translation was never filled in), pypdf glues many words
# 3. Mirrors them into a stable folder to ingest (OUTDIR defaults to
#    ${RAG_EVAL_CORPORA:-${XDG_CACHE_HOME:-~/.cache}/rag/eval-corpora}):
#      OUTDIR/sqlite3-doc/   every *.html of the sqlite docs, relative paths kept (c3ref/open.html, ...);
#                            no images, stylesheets, search databases or the copyright-release PDF
#      OUTDIR/gnuplot-doc/   gnuplot.pdf only (decompressed if the package ships gnuplot.pdf.gz)
#      OUTDIR/debian-edu-doc-zh/  debian-edu-bookworm-manual.pdf only (98 pages, Chinese; ~1 minute to ingest):
#                            the HTML and EPUB are the same text, the bullseye manual an older edition of it
#      OUTDIR/linuxcnc-doc-zh/    LinuxCNC_Getting_Started, _Integrator and _Developer _zh_CN.pdf and
#                            gcode_zh_CN.html (158 pages); not LinuxCNC_Documentation_zh_CN.pdf, whose 1,335
#                            pages (~20,000 chunks) would take ~40 minutes to ingest on 2 cores
#    Files are copied with their mtimes and only when their content differs, and files no longer in
#    the package are removed, so reruns change nothing and `rag ingest` sees the corpus as unchanged.
# 4. Prints one line per corpus on stdout (progress goes to stderr):
#      sqlite3-doc=OUTDIR/sqlite3-doc
#      gnuplot-doc=OUTDIR/gnuplot-doc
#      debian-edu-doc-zh=OUTDIR/debian-edu-doc-zh
#      linuxcnc-doc-zh=OUTDIR/linuxcnc-doc-zh
#
# The question sets data/eval/<name>.jsonl give sources relative to these folders (PDF pages are
# 1-based physical pages as pypdf counts them); check them with
#   .venv/bin/python scripts/check_eval_sets.py OUTDIR/sqlite3-doc OUTDIR/gnuplot-doc \
#       OUTDIR/debian-edu-doc-zh OUTDIR/linuxcnc-doc-zh
set -euo pipefail

OUTDIR=${1:-${RAG_EVAL_CORPORA:-${XDG_CACHE_HOME:-$HOME/.cache}/rag/eval-corpora}}
PACKAGES=(sqlite3-doc gnuplot-doc debian-edu-doc-zh-cn linuxcnc-doc-zh-cn)

log() { printf '%s\n' "$*" >&2; }
die() { log "eval_corpora: $*"; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

command -v dpkg-query >/dev/null || die "needs a Debian-based system (dpkg/apt-get)"

missing=()
for pkg in "${PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
if ((${#missing[@]})); then
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "not root and no sudo: install ${missing[*]} yourself"
        SUDO=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    log "installing ${missing[*]}"
    if ! "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
        log "install failed; refreshing the package lists and retrying"
        "${SUDO[@]}" apt-get update >&2
        "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2
    fi
fi

# The folder of the sqlite HTML site: where the package puts lang_select.html.
sqlite_select=$(dpkg -L sqlite3-doc | grep -m1 '/lang_select\.html$' || true)
[[ -n $sqlite_select && -f $sqlite_select ]] ||
    die "sqlite3-doc is installed but its HTML is missing (a dpkg path-exclude for /usr/share/doc?)"
sqlite_src=$(dirname "$sqlite_select")

gnuplot_pdf=$(dpkg -L gnuplot-doc | grep -m1 -E '/gnuplot\.pdf(\.gz)?$' || true)
[[ -n $gnuplot_pdf && -f $gnuplot_pdf ]] ||
    die "gnuplot-doc is installed but gnuplot.pdf is missing (a dpkg path-exclude for /usr/share/doc?)"
log "sqlite3-doc installs its HTML in $sqlite_src; gnuplot-doc its manual as $gnuplot_pdf"

# pkgfile PACKAGE NAME: the path of the file NAME that PACKAGE installs (or die).
pkgfile() {
    local found
    found=$(dpkg -L "$1" | grep -m1 "/$2\$" || true)
    [[ -n $found && -f $found ]] || die "$1 is installed but $2 is missing (a dpkg path-exclude for /usr/share/doc?)"
    printf '%s\n' "$found"
}

# copy SRC DEST: copy with mode and mtime unless DEST already has the same bytes.
copy() {
    if ! cmp -s "$1" "$2"; then
        mkdir -p "$(dirname "$2")"
        cp -p "$1" "$2"
    fi
}

sqlite_out=$OUTDIR/sqlite3-doc
gnuplot_out=$OUTDIR/gnuplot-doc
mkdir -p "$sqlite_out" "$gnuplot_out"

count=0
while IFS= read -r -d '' rel; do
    copy "$sqlite_src/$rel" "$sqlite_out/$rel"
    count=$((count + 1))
done < <(cd "$sqlite_src" && find . -type f -name '*.html' -printf '%P\0')
# Remove whatever the package no longer ships (or anything else put there).
while IFS= read -r -d '' rel; do
    [[ -f $sqlite_src/$rel && $rel == *.html ]] || rm -f -- "${sqlite_out:?}/$rel"
done < <(cd "$sqlite_out" && find . -type f -printf '%P\0')
find "$sqlite_out" -mindepth 1 -type d -empty -delete

if [[ $gnuplot_pdf == *.gz ]]; then
    tmp=$(mktemp "$gnuplot_out/.gnuplot.pdf.XXXXXX")
    gzip -dc "$gnuplot_pdf" >"$tmp"
    touch -r "$gnuplot_pdf" "$tmp"
    if cmp -s "$tmp" "$gnuplot_out/gnuplot.pdf"; then rm -f "$tmp"; else chmod 644 "$tmp" && mv "$tmp" "$gnuplot_out/gnuplot.pdf"; fi
else
    copy "$gnuplot_pdf" "$gnuplot_out/gnuplot.pdf"
fi
find "$gnuplot_out" -mindepth 1 ! -name gnuplot.pdf -delete

# mirror DEST FILE...: DEST holds exactly these files (by base name), copied when they differ.
mirror() {
    local dest=$1 f keep=()
    shift
    mkdir -p "$dest"
    for f in "$@"; do
        copy "$f" "$dest/$(basename "$f")"
        keep+=(! -name "$(basename "$f")")
    done
    find "$dest" -mindepth 1 "${keep[@]}" -delete
}

edu_out=$OUTDIR/debian-edu-doc-zh
mirror "$edu_out" "$(pkgfile debian-edu-doc-zh-cn debian-edu-bookworm-manual.pdf)"
cnc_out=$OUTDIR/linuxcnc-doc-zh
cnc_files=()
for name in LinuxCNC_Getting_Started_zh_CN.pdf LinuxCNC_Integrator_zh_CN.pdf LinuxCNC_Developer_zh_CN.pdf \
    gcode_zh_CN.html; do
    cnc_files+=("$(pkgfile linuxcnc-doc-zh-cn "$name")")
done
mirror "$cnc_out" "${cnc_files[@]}"

log "$count HTML files in $sqlite_out ($(du -sh "$sqlite_out" | cut -f1)); $(du -h "$gnuplot_out/gnuplot.pdf" | cut -f1) PDF in $gnuplot_out"
echo "sqlite3-doc=$sqlite_out"
echo "gnuplot-doc=$gnuplot_out"
echo "debian-edu-doc-zh=$edu_out"
echo "linuxcnc-doc-zh=$cnc_out"
