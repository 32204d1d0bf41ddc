#!/usr/bin/env bash
# Prints the version that make install and make release stamp into both
# binaries and name their directories and archives by: X.Y.Z at a tag vX.Y.Z;
# elsewhere the last tag (or 0.0.0) with what the build is from as semver
# build metadata, X.Y.Z+dev.N.gHASH[.dirty]. Build metadata, not a
# prerelease such as 0.0.0-dev, because Terraform and OpenTofu select a
# prerelease only when a configuration asks for exactly that version.
set -euo pipefail
cd "$(dirname "$0")/../.."

dirty=""
git diff --quiet HEAD -- 2>/dev/null || dirty=".dirty"

if ! desc=$(git describe --tags --long --match 'v[0-9]*.[0-9]*.[0-9]*' 2>/dev/null); then
	# No release tag yet (or no git): 0.0.0 and the commit, when there is one.
	hash=$(git rev-parse --short=12 HEAD 2>/dev/null) || { echo "0.0.0+dev"; exit 0; }
	echo "0.0.0+dev.g$hash$dirty"
	exit 0
fi
# desc is vX.Y.Z-N-gHASH; the tag itself may hold dashes (v1.2.3-rc.1).
hash=${desc##*-}
rest=${desc%-*}
n=${rest##*-}
tag=${rest%-*}
if [ "$n" = 0 ] && [ -z "$dirty" ]; then
	echo "${tag#v}"
else
	echo "${tag#v}+dev.$n.$hash$dirty"
fi
