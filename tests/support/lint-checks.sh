#!/bin/sh
# lint-checks.sh SRCDIR -- fails when a shell test writes a check that
# cannot fail (tests/support/testlib.sh says how to write them):
#   check NAME [ a ] && [ b ]     the second test runs outside the check
#   check NAME [ $? = 0 ]         $? after `check "$(...)"` is the command
#                                 substitution's, always 0
# Run as the unit test shell_checks_lint.
src=${1:?usage: lint-checks.sh SRCDIR}
bad=$(cd "$src" && find tests bindings integrations bench examples -name '*.sh' -print0 |
    xargs -0 grep -nE \
        -e '^[[:space:]]*check[[:space:]].*\][[:space:]]*(&&|\|\|)[[:space:]]*\[' \
        -e '^[[:space:]]*check[[:space:]].*\[[[:space:]]+"?\$\?"?[[:space:]]' \
        -e '^[[:space:]]*(check|check_all)[[:space:]].*\$\?' 2>/dev/null)
if [ -n "$bad" ]; then
    echo "FAILED: checks that cannot fail (see tests/support/testlib.sh):"
    printf '%s\n' "$bad" | sed 's/^/   /'
    exit 1
fi
n=$(cd "$src" && find tests bindings integrations bench examples -name '*.sh' -print0 |
    xargs -0 grep -cE '^[[:space:]]*check(_all|_between|_ok)?[[:space:]]' | awk -F: '{ s += $2 } END { print s + 0 }')
[ "$n" -gt 0 ] || { echo "FAILED: found no checks at all under $src (wrong directory?)"; exit 1; }
echo "$n checks in shell tests, none of the forms that cannot fail"
