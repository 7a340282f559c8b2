#!/usr/bin/env bash
# Re-execute notebooks in place (default: all) and strip run-time metadata, so that the committed
# files carry outputs and figures but no timings. Run from anywhere: notebooks/execute.sh [NAME.ipynb ...]
# Every notebook also loses its widget state (metadata.widgets, some 70 KB each): the static figures
# are the checked outputs, and the live widget cells (tagged nbval-ignore-output) keep only a
# reference to the widget, drawn again when the cell runs.
set -euo pipefail
cd "$(dirname "$0")"
python=../.venv/bin/python
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(*.ipynb)
for name in "${names[@]}"; do
  "$python" -m jupyter nbconvert --to notebook --execute --inplace "$name"
  "$python" - "$name" <<'PY'
import json, sys
path = sys.argv[1]
notebook = json.load(open(path))
for cell in notebook["cells"]:
    cell.get("metadata", {}).pop("execution", None)
notebook["metadata"].pop("papermill", None)
notebook["metadata"].pop("widgets", None)
with open(path, "w") as handle:
    json.dump(notebook, handle, indent=1, ensure_ascii=False)
    handle.write("\n")
PY
done
