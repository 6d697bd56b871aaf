#!/bin/sh
# hash_key.sh: `sluice hash-key` against known SHA-256 vectors (and
# sha256sum when the system has it): the key as an argument, from stdin with
# one trailing newline dropped (only one), and its refusals.
#   tests/runtime/cli/hash_key.sh PATH/TO/sluice
sluice=${1:?usage: hash_key.sh PATH/TO/sluice}
fails=0
expect() { # name, got, want
  if [ "$2" = "$3" ]; then
    echo "ok   $1"
  else
    echo "FAIL $1: got '$2', want '$3'" >&2
    fails=$((fails + 1))
  fi
}
abc=sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
abc_nl=sha256:edeaaff3f1774ad2888673770c6d64097e391bc362d7d6fb34982ddf0efd18cb

expect "argument" "$("$sluice" hash-key abc)" "$abc"
expect "stdin, no newline" "$(printf 'abc' | "$sluice" hash-key)" "$abc"
expect "stdin, one newline dropped" "$(printf 'abc\n' | "$sluice" hash-key)" "$abc"
expect "stdin, only one newline dropped" "$(printf 'abc\n\n' | "$sluice" hash-key)" "$abc_nl"
if command -v sha256sum >/dev/null; then
  expect "a key after --" "$("$sluice" hash-key -- -abc)" "sha256:$(printf %s -abc | sha256sum | cut -c1-64)"
  key='sk-live-0123456789 with spaces'
  expect "agrees with sha256sum" "$("$sluice" hash-key "$key")" "sha256:$(printf %s "$key" | sha256sum | cut -c1-64)"
fi

"$sluice" hash-key '' 2>/dev/null
expect "empty argument refused" "$?" 1
printf '\n' | "$sluice" hash-key 2>/dev/null
expect "empty stdin refused" "$?" 1
"$sluice" hash-key a b 2>/dev/null
expect "two keys: usage" "$?" 2
expect "help" "$("$sluice" hash-key --help | head -1)" "usage: sluice hash-key [KEY]"

if [ "$fails" -ne 0 ]; then
  echo "$fails failed" >&2
  exit 1
fi
echo "all passed"
