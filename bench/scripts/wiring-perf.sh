#!/usr/bin/env bash
# Compares the perf profiles `wiring-scale --perf DIR` wrote for one layout:
# DIR/<layout>-lo.<k>.data (the first W tenants of run k) and
# DIR/<layout>-hi.<k>.data (the last W). For each kernel or user function, the
# CPU time per tenant spent in it (inclusive: the function and what it calls,
# averaged over the runs) by the benchmark process, and by the kernel's workers
# (kworker/*: linkwatch, addrconf, … run there, holding the same rtnl lock),
# at both ends, sorted by growth.
#
#   bench/scripts/wiring-perf.sh DIR LAYOUT [W] [TOP]
#
# W is the window (tenants per file, default 100), TOP the rows shown (30).
# Samples are `perf record -a -g` at a fixed frequency on every CPU, so
# samples / frequency is CPU time; the machine's other processes are left out.
# Time spent waiting (for the rtnl lock, for a CPU) is not in these figures.
set -euo pipefail
dir=${1:?usage: wiring-perf.sh DIR LAYOUT [W] [TOP]}
layout=${2:?usage: wiring-perf.sh DIR LAYOUT [W] [TOP]}
window=${3:-100}
top=${4:-30}
proc=wiring-scale

table() { # file -> lines "group<TAB>symbol<TAB>µs per tenant"
    file=$1
    freq=$(perf report -i "$file" --header-only 2>/dev/null |
        sed -n 's/.*sample_freq } = \([0-9]*\).*/\1/p' | head -n 1)
    total=$(perf report -i "$file" --stdio --no-children --sort comm -g none -n 2>/dev/null |
        awk '!/^#/ && NF >= 3 { s += $2 } END { print s + 0 }')
    perf report -i "$file" --stdio --children --sort comm,sym -g none -n 2>/dev/null |
        awk -v total="$total" -v freq="$freq" -v w="$window" -v proc="$proc" '
            !/^#/ && NF >= 6 {
                comm = $4
                if (comm == proc) group = "process"
                else if (comm ~ /^kworker\//) group = "kworker"
                else next
                sym = $6
                for (i = 7; i <= NF; i++) sym = sym " " $i
                if (sym ~ /^0x/) next
                pct = $1; sub(/%/, "", pct)
                us = pct / 100 * total / freq * 1e6 / w
                key = group "\t" $5 " " sym
                v[key] += us
            }
            END { for (k in v) printf "%s\t%.1f\n", k, v[k] }'
    # Totals: all samples of the process and of the workers.
    perf report -i "$file" --stdio --no-children --sort comm -g none -n 2>/dev/null |
        awk -v freq="$freq" -v w="$window" -v proc="$proc" '
            !/^#/ && NF >= 3 {
                if ($3 == proc) p += $2
                else if ($3 ~ /^kworker\//) k += $2
            }
            END {
                printf "process\t(all of it)\t%.1f\n", p / freq * 1e6 / w
                printf "kworker\t(all of it)\t%.1f\n", k / freq * 1e6 / w
            }'
}

average() { # tag -> the mean over the runs of each line of `table`
    local files=("$dir/$layout-$1".*.data)
    [ -e "${files[0]}" ] || { echo "no $dir/$layout-$1.*.data" >&2; exit 1; }
    for f in "${files[@]}"; do table "$f"; done |
        awk -F '\t' -v n="${#files[@]}" '{ v[$1 "\t" $2] += $3 } END { for (k in v) printf "%s\t%.1f\n", k, v[k] / n }'
}

lo=$(mktemp)
hi=$(mktemp)
trap 'rm -f "$lo" "$hi"' EXIT
average lo | sort > "$lo"
average hi | sort > "$hi"
runs=$(ls "$dir/$layout-hi".*.data | wc -l)

echo "layout $layout: CPU µs per tenant, inclusive, first $window tenants (lo) vs last $window (hi), mean of $runs runs"
echo
echo "| where | function | lo | hi | growth | share of hi (process + workers) |"
echo "|---|---|---|---|---|---|"
join -t "$(printf '\t')" -a 1 -a 2 -e 0 -o 0,1.2,2.2 \
    <(awk -F '\t' '{ print $1 "|" $2 "\t" $3 }' "$lo" | sort) \
    <(awk -F '\t' '{ print $1 "|" $2 "\t" $3 }' "$hi" | sort) 2>/dev/null |
    awk -F '\t' '
        { split($1, k, "|"); lo[$1] = $2; hi[$1] = $3; g[$1] = k[1]; s[$1] = k[2] }
        k[2] == "(all of it)" { all += $3 }
        END {
            for (x in lo) printf "%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\n", g[x], s[x], lo[x], hi[x], hi[x] - lo[x], (all > 0 ? 100 * hi[x] / all : 0)
        }' |
    sort -t "$(printf '\t')" -k5,5 -g -r | head -n "$top" |
    awk -F '\t' '{ printf "| %s | %s | %s | %s | %+.1f | %.1f %% |\n", $1, $2, $3, $4, $5, $6 }'
