#!/bin/sh
# The README's main job: patch a copy of the bundled example, show the diff, train it for a few steps.
set -e
cd "$(dirname "$0")/.."
bin=.venv/bin
work=$(mktemp -d)
cp examples/train_digits.py "$work/train_digits.py"
echo "== xgrad-rewrite --s 2 --diff (exit status 1: the file would change)"
"$bin/xgrad-rewrite" --s 2 --diff "$work/train_digits.py" || [ $? -eq 1 ]
echo "== xgrad-rewrite --s 2 (patch the copy in place)"
"$bin/xgrad-rewrite" --s 2 "$work/train_digits.py"
echo "== python train_digits.py (patched: trains with XGrad-S2)"
"$bin/python" "$work/train_digits.py" --epochs 1 --log-interval 5
rm -r "$work"
