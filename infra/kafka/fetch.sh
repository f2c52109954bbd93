#!/usr/bin/env bash
# Fetches Apache Kafka's broker jars from Maven Central into infra/kafka/dist/libs (once; cached).
# Usage: infra/kafka/fetch.sh [--force]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
libs="$here/dist/libs"
stamp="$here/dist/.fetched"
# The stamp records which pom the jars came from, so editing the pom (e.g. the Kafka version) refetches.
want="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"
if [[ "${1:-}" != "--force" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
command -v mvn >/dev/null || { echo "fetch.sh: mvn (Apache Maven) is needed to fetch the Kafka jars" >&2; exit 1; }
command -v java >/dev/null || { echo "fetch.sh: java (17 or newer) is needed to run Kafka" >&2; exit 1; }
echo "fetch.sh: fetching the Kafka jars into $libs" >&2
rm -rf "$libs.tmp"
mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs.tmp" >&2
rm -rf "$libs"
mv "$libs.tmp" "$libs"
echo "$want" > "$stamp"
