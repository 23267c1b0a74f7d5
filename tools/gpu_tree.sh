#!/usr/bin/env bash
# The device tool sends this checkout's working tree -- tracked files and untracked files git
# does not ignore, plus what `carry` names -- and refuses more than 64 MiB
# (../.library/device/README.md, "Limits"). The shipped weights alone are about 120 MB, so a GPU
# session slims the tree first and restores it before it commits anything:
#
#   tools/gpu_tree.sh slim      # untrack the shipped .safetensors (they stay on disk) and ignore them here
#   tools/gpu_tree.sh restore   # track them again; `git status` is clean as before
#   tools/gpu_tree.sh size      # bytes that would travel (without carried paths)
#
# While slim, the index says the weights are deleted: a commit then would delete them from main.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
weights='src/neurocodec/weights/*.safetensors'
exclude="$(git rev-parse --git-path info/exclude)"

size() {
    { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 stat -c %s | awk '{n += $1} END {print n}'
}

case "${1:-}" in
    slim)
        mkdir -p "$(dirname "$exclude")"
        grep -qxF "$weights" "$exclude" 2>/dev/null || echo "$weights" >>"$exclude"
        git rm -q --cached -- "$weights"
        echo "slim: the shipped weights no longer travel; run 'tools/gpu_tree.sh restore' before any commit" >&2
        ;;
    restore)
        [ -f "$exclude" ] && sed -i "\\|^src/neurocodec/weights/\\*\\.safetensors\$|d" "$exclude"
        git add -- "$weights"
        ;;
    size) ;;
    *)
        echo "usage: tools/gpu_tree.sh slim|restore|size" >&2
        exit 2
        ;;
esac
echo "travels: $(size) bytes (limit 67108864, carried paths included)"
