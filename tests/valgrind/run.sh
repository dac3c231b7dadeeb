#!/usr/bin/env bash
# Valgrind memcheck over the Python tests that drive the qsketch extension.
#
#   tests/valgrind/run.sh                 # the default subset (about 7 minutes on 2 cores)
#   tests/valgrind/run.sh tests/test_serde.py -k truncation    # any pytest arguments instead
#
# Runs the interpreter itself (not a pyenv shim) under valgrind with
# PYTHONMALLOC=malloc, so that every Python allocation is a malloc valgrind
# can track.  Fails (exit 99) on any memcheck error -- invalid read or write,
# use of uninitialised memory, invalid free -- and on any *definite* leak;
# possible leaks and still-reachable blocks are the interpreter's own
# long-lived objects and are not reported.  tests/valgrind/python.supp
# suppresses only noise from CPython 3.11, glibc's loader and numpy, each
# entry with the reason; none can match a frame of qsketch's extension.
#
# Not part of CI: valgrind runs the interpreter 30-50x slower.  The C core has
# its own, faster valgrind run: make -C csrc/tests valgrind.
#
# Environment: PYTHON (default: python3 on PATH, resolved to the real
# executable), VALGRIND_LOG (default: a temporary file, printed on failure).
set -euo pipefail
cd "$(dirname "$0")/../.."

py=${PYTHON:-python3}
# a pyenv shim is a shell script: run valgrind on the interpreter it execs
py=$("$py" -c 'import sys; print(sys.executable)')
log=${VALGRIND_LOG:-$(mktemp -t qsketch-valgrind.XXXXXX)}

if [ $# -eq 0 ]; then
    # The default subset: every entry point of the extension (updates of
    # every kind, the exact table, weights, merges, copies, pickling, the
    # decoder on good and corrupt bytes, queries with every estimator, bad
    # input and its error paths, threads), on small data so that it runs in
    # minutes under valgrind.
    # (bad input: one state of the sketch, "estimation", keeps it to minutes)
    expr="exact_mode_matches_oracle or merge_exact or merge_different_k or merge_into_itself
        or pickle_round_trip or weights_int or large_weights or weight_two or copy or sorted_view
        or test_empty_sketch or test_one_item or nan_policy_ignore or infinities
        or test_round_trip or every_truncation_fails_small
        or random_bit_flips or forged or rejected_bytes_do_not_leak or golden or from_bytes_garbage
        or every_call_leaves or scalar_updates_are_counted_exactly or cross_merges or bit_identical
        or ((test_update_rejects_non_numeric or bad_weight_values or bad_weight_types or quantile_out_of_range
             or nan_queries or merge_non_sketch or nan_policy_raise or weight_total_overflow) and estimation)"
    set -- tests/test_core.py tests/test_serde.py tests/test_bad_input.py tests/test_threads.py \
        -k "$(echo $expr)"  # one line: pytest refuses newlines in -k
fi

echo "== valgrind memcheck: $py -m pytest $* (log: $log)"
status=0
PYTHONMALLOC=malloc PYTHONDONTWRITEBYTECODE=1 HYPOTHESIS_PROFILE=dev \
valgrind --tool=memcheck --error-exitcode=99 \
    --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    --suppressions=tests/valgrind/python.supp --num-callers=40 --log-file="$log" \
    "$py" -m pytest -x -q -p no:cacheprovider "$@" || status=$?

grep -E "ERROR SUMMARY|definitely lost|Invalid (read|write)|uninitialised" "$log" | sort | uniq -c | sed 's/^/    /' || true
if [ "$status" -ne 0 ]; then
    echo "== FAILED (exit $status): valgrind errors or a failing test; the log follows" >&2
    cat "$log" >&2
    exit "$status"
fi
# A stack frame in qsketch's code is never noise, whatever the suppressions say.
frames='^==[0-9]+== +(at|by) 0x[0-9A-F]+: .*(qsketch|_core\.c|_core\.cpython|qs_[a-z_0-9]+ \()'
if grep -qE "$frames" "$log"; then
    echo "== FAILED: a valgrind report has a frame in qsketch's code" >&2
    grep -nE -B12 -A12 "$frames" "$log" >&2
    exit 98
fi
echo "== OK: no memcheck error and no definite leak"
