#!/usr/bin/env bash
# Puts Doppel in the desktop's application menu for this user, and a launcher beside the
# executable, so a double-click (menu, dock or file manager) starts the built app.
#   packaging/install-desktop.sh [BUNDLE_DIR]   from a checkout (default BUNDLE_DIR: dist/doppel)
#   ./install-desktop.sh                        inside an unpacked build (make package copies it there)
#   ... --uninstall                             removes the menu entry and the icons again
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
apps=$data/applications
sizes=(16 32 48 64 128 256 512)

if [[ ${1:-} == --uninstall ]]; then
  rm -f "$apps/doppel.desktop" "$data/icons/hicolor/scalable/apps/doppel.svg"
  for size in "${sizes[@]}"; do rm -f "$data/icons/hicolor/${size}x${size}/apps/doppel.png"; done
  echo "install-desktop: removed Doppel from the application menu"
  exit 0
fi

bundle=${1:-}
if [[ -z $bundle ]]; then
  if [[ -x $here/doppel && -d $here/_internal ]]; then bundle=$here; else bundle=$here/../dist/doppel; fi
fi
[[ -d $bundle ]] || { echo "install-desktop: no build at $bundle; make one with: make package" >&2; exit 1; }
bundle=$(cd "$bundle" && pwd)
exe=$bundle/doppel
[[ -x $exe ]] || { echo "install-desktop: $exe is missing or not executable; rebuild with: make package" >&2; exit 1; }
# The .desktop template and icons: inside the build (the spec puts them in _internal/desktop) or this checkout.
src=
for dir in "$bundle/_internal/desktop" "$here"; do
  if [[ -f $dir/doppel.desktop && -d $dir/icons ]]; then src=$dir; break; fi
done
[[ -n $src ]] || { echo "install-desktop: doppel.desktop and icons/ not found in the build or beside this script" >&2; exit 1; }

for size in "${sizes[@]}"; do
  install -D -m 644 "$src/icons/doppel-$size.png" "$data/icons/hicolor/${size}x${size}/apps/doppel.png"
done
install -D -m 644 "$src/icons/doppel.svg" "$data/icons/hicolor/scalable/apps/doppel.svg"

# Exec takes a quoted absolute path (the folder may contain spaces); '%' is doubled per the spec.
quoted=${exe//\\/\\\\}
quoted=${quoted//\"/\\\"}
quoted=${quoted//%/%%}
entry=$(mktemp)
while IFS= read -r line; do
  case $line in
    Exec=*) printf 'Exec="%s"\n' "$quoted" ;;
    TryExec=*) printf 'TryExec=%s\n' "$exe" ;;
    \#*) ;;
    *) printf '%s\n' "$line" ;;
  esac
done < "$src/doppel.desktop" > "$entry"
install -D -m 755 "$entry" "$apps/doppel.desktop"
install -m 755 "$entry" "$bundle/Doppel.desktop"
rm -f "$entry"

# Refresh caches and mark the folder launcher trusted where those tools exist (GNOME asks otherwise).
command -v update-desktop-database >/dev/null && update-desktop-database -q "$apps" || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$data/icons/hicolor" 2>/dev/null || true
command -v gio >/dev/null && gio set "$bundle/Doppel.desktop" metadata::trusted true 2>/dev/null || true
echo "install-desktop: Doppel is in the application menu ($apps/doppel.desktop -> $exe)"
echo "install-desktop: double-click $bundle/Doppel.desktop in a file manager to start it there"
