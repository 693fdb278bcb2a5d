# examples/install.sh: the package built from a clone of this repository, used from an app of your own.
set -e
tgz="$PWD/$(npm pack --silent | tail -n 1)"   # prepack builds dist/; this writes tsnetlink-VERSION.tgz
mkdir -p ../my-app && cd ../my-app
npm init -y > /dev/null && npm pkg set type=module
npm install --no-audit --no-fund "$tgz"
# The links of this netns, over a NETLINK_ROUTE socket (needs no root: a dump changes nothing).
node -e "import('tsnetlink').then(({ Rtnl }) => { const rt = Rtnl.open(); console.log(rt.linkList().map((l) => l.name)); rt.close(); })"
node -e "require('tsnetlink')" 2>&1 | grep -m 1 -o ERR_PACKAGE_PATH_NOT_EXPORTED   # ESM only: no require
npx tsnetlink --version
