#!/usr/bin/env bash
# Builds Apicurio Registry (its Confluent-compatible API, in-memory H2 storage) into a
# runnable Quarkus app under $TOWER_CACHE_DIR, once; the tests start it like the broker.
#
# The registry publishes apicurio-registry-app as a library jar; Quarkus's build goal turns
# it into quarkus-app/quarkus-run.jar. The Maven repository reached here serves only part
# of Apicurio's 3.0 and Quarkus's 3.15 releases, so, in a Maven repository of the build's
# own that ~/.m2 never sees:
# - the 3.0.9 parent POM and config-index-deployment are the 3.0.7 and 3.0.6 ones,
#   installed as 3.0.9; config-definitions is 3.0.6 less Info (and its index), whose 3.0.9
#   form, with the category enum it names, src/ holds;
# - utils-kafka (used only by the KafkaSQL storage) is 2.6.13.Final and
#   protobuf-schema-utilities 3.0.7 (pom.xml);
# - Quarkus is 3.15.3, a 3.15 release whose every deployment jar is served, and the MySQL
#   and SQL Server drivers are left out (their Flyway parts are not served).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${TOWER_CACHE_DIR:-$HOME/.cache/journey-tower}"
digest="$(cd "$here" && find pom.xml build.sh src -type f | sort | xargs cat | sha256sum | cut -c1-12)"
out="$cache/apicurio-registry-$digest"
if [ -f "$out/quarkus-app/quarkus-run.jar" ]; then
  echo "$out/quarkus-app/quarkus-run.jar"
  exit 0
fi
repo="$cache/apicurio-m2"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mvn=(mvn -B -q -Dmaven.repo.local="$repo")

# retry COMMAND...: a download's connection reset is not the end of the build
retry() {
  "$@" || { sleep 5; "$@"; } || { sleep 15; "$@"; }
}

# alias GROUP ARTIFACT FROM TO PACKAGING [ENTRY...]: install FROM's published files as
# version TO, without the jar entries named (src/ holds their 3.0.9 forms).
alias_version() {
  local g="$1" a="$2" from="$3" to="$4" packaging="$5" path
  shift 5
  path="$repo/${g//.//}/$a"
  [ -f "$path/$to/$a-$to.pom" ] && [ -f "$path/$to/.aliased-$digest" ] && return 0
  retry "${mvn[@]}" dependency:get -Dtransitive=false -Dartifact="$g:$a:$from:pom" >/dev/null
  [ "$packaging" = pom ] \
    || retry "${mvn[@]}" dependency:get -Dtransitive=false -Dartifact="$g:$a:$from" >/dev/null
  sed "s#<version>$from</version>#<version>$to</version>#g" \
    "$path/$from/$a-$from.pom" > "$work/$a.pom"
  local file="$work/$a.pom"
  if [ "$packaging" != pom ]; then
    file="$work/$a.jar"
    python3 - "$path/$from/$a-$from.jar" "$file" "$@" <<'PY'
import sys, zipfile
source, target, dropped = sys.argv[1], sys.argv[2], set(sys.argv[3:])
with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        if item.filename not in dropped:
            dst.writestr(item, src.read(item))
PY
  fi
  "${mvn[@]}" install:install-file -Dfile="$file" -DpomFile="$work/$a.pom" >/dev/null
  touch "$path/$to/.aliased-$digest"
}
alias_version io.apicurio apicurio-registry 3.0.7 3.0.9 pom
alias_version io.apicurio apicurio-registry-config-index-deployment 3.0.6 3.0.9 jar
alias_version io.apicurio apicurio-registry-config-definitions 3.0.6 3.0.9 jar \
  io/apicurio/common/apps/config/Info.class META-INF/jandex.idx

cp -r "$here/pom.xml" "$here/src" "$work/"
(cd "$work" && retry "${mvn[@]}" package -DskipTests \
  -Dquarkus.package.jar.type=fast-jar \
  -Dquarkus.index-dependency.definitions.group-id=io.apicurio \
  -Dquarkus.index-dependency.definitions.artifact-id=apicurio-registry-config-definitions \
  -Dquarkus.datasource.mysql.db-kind=h2 -Dquarkus.datasource.mssql.db-kind=h2 >&2)
mkdir -p "$work/out"
cp -r "$work/target/quarkus-app" "$work/out/"
mkdir -p "$cache"
mv -T "$work/out" "$out" 2>/dev/null || [ -f "$out/quarkus-app/quarkus-run.jar" ]  # else a concurrent build won
echo "$out/quarkus-app/quarkus-run.jar"
