#!/usr/bin/env bash
# The demo `make run` ends with: the seed's example query, then a page of a generated
# installation. README's quickstart shows its output; tests/readme.rs checks they match.
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-6379}
show() {
    echo "\$ redis-cli $*"
    redis-cli -p "$port" --no-raw "$@"
    echo
}
redis-cli -p "$port" < scripts/seed.redis > /dev/null
show CRM.MEETINGS 10 2 FILTER type email FILTER status open
./target/release/crm-load --port "$port" --installation 20 --meetings 2000 --neighbours 0 --user-prefix g > /dev/null
echo "(crm-load wrote 2000 generated meetings into installation 20, users g1 to g200)"
echo
show CRM.MEETINGS 20 g1 FILTER status open SORTBY date DESC LIMIT 0 3 RETURN 2 type date
echo "(the seed's meetings are untouched: crm-load skips ids another installation holds)"
echo
show CRM.MEETINGS 10 2 FILTER type email FILTER status open
