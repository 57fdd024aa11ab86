# Small list/attrset helpers built on builtins only.
# nix/lib must evaluate without nixpkgs (the flake's pure checks and T1 tests
# run where nixpkgs cannot be fetched), so nothing here may import <nixpkgs>.
rec {
  concatMap = builtins.concatMap;

  # Values that occur more than once in a list of strings/ints, each reported once, sorted.
  duplicates =
    xs:
    let
      groups = builtins.groupBy toString xs;
    in
    builtins.sort builtins.lessThan (builtins.filter (k: builtins.length groups.${k} > 1) (builtins.attrNames groups));

  # name -> the FIRST element of `xs` with that key.  `listToAttrs` keeps the first of equal
  # names, so this is O(n log n); a foldl' whose step does `acc // { … }` copies the whole set
  # at every element and makes a fleet-wide rule quadratic (3,000 hosts took 18 s).
  firstByKey = key: xs: builtins.listToAttrs (map (x: { name = key x; value = x; }) xs);

  # The elements of `xs` paired with their position: [ { i; v; } ].
  indexed = xs: builtins.genList (i: { inherit i; v = builtins.elemAt xs i; }) (builtins.length xs);

  # Each element once, first occurrence kept, in order: O(n log n) for strings and ints
  # (listToAttrs keeps the first of equal names); other values fall back to elem.
  unique =
    xs:
    if builtins.all (x: builtins.isString x || builtins.isInt x) xs then
      let
        keyed = indexed xs;
        firstAt = builtins.listToAttrs (map (e: { name = "${builtins.typeOf e.v}:${toString e.v}"; value = e.i; }) keyed);
      in
      map (e: e.v) (builtins.filter (e: firstAt."${builtins.typeOf e.v}:${toString e.v}" == e.i) keyed)
    else
      builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ] xs;

  # A set of strings as an attrset (membership `set ? ${x}` in O(log n), unlike elem's O(n)).
  toSet = xs: builtins.listToAttrs (map (x: { name = x; value = true; }) xs);

  hasPrefix = pre: s: builtins.substring 0 (builtins.stringLength pre) s == pre;

  hasSuffix =
    suf: s:
    let
      ls = builtins.stringLength s;
      lf = builtins.stringLength suf;
    in
    lf <= ls && builtins.substring (ls - lf) lf s == suf;

  removeSuffix = suf: s: if hasSuffix suf s then builtins.substring 0 (builtins.stringLength s - builtins.stringLength suf) s else s;

  # Split on a literal one-character separator (builtins.split takes a regex).
  splitOn = sep: s: builtins.filter builtins.isString (builtins.split (escapeRegex sep) s);

  escapeRegex = builtins.replaceStrings [ "." "+" "*" "?" "[" "]" "(" ")" "{" "}" "|" "^" "$" "\\" ] [ "\\." "\\+" "\\*" "\\?" "\\[" "\\]" "\\(" "\\)" "\\{" "\\}" "\\|" "\\^" "\\$" "\\\\" ];

  last = xs: builtins.elemAt xs (builtins.length xs - 1);

  optional = cond: x: if cond then [ x ] else [ ];
  optionals = cond: xs: if cond then xs else [ ];

  # JSON pointer escaping (RFC 6901), as Python's loader writes pointers.
  pointerPart = p: builtins.replaceStrings [ "~" "/" ] [ "~0" "~1" ] (toString p);
  pointer = parts: if parts == [ ] then "" else "/" + builtins.concatStringsSep "/" (map pointerPart parts);

  # The entries of a folder (readDir: name -> type), {} when it does not exist.  readDir is
  # bound once: a call per entry re-reads the folder every time, which made loading 3,000
  # hosts quadratic.
  entriesOf = dir: if builtins.pathExists dir then builtins.readDir dir else { };

  # Subdirectories of a path, sorted (attrNames is sorted); [] when the path does not exist.
  subdirs =
    dir:
    let
      entries = entriesOf dir;
    in
    builtins.filter (n: entries.${n} == "directory") (builtins.attrNames entries);

  # `*.json` files directly in a path, sorted; [] when the path does not exist.  One lambda
  # per entry (hasSuffix inlined): a folder per host is listed.
  jsonFiles =
    dir:
    let
      entries = entriesOf dir;
    in
    builtins.filter (
      n:
      let
        l = builtins.stringLength n;
      in
      l >= 5 && builtins.substring (l - 5) 5 n == ".json" && entries.${n} != "directory"
    ) (builtins.attrNames entries);

  # Sort findings the way Python does (dataclass order: code, file, pointer, message).
  sortFindings = builtins.sort (
    a: b:
    if a.code != b.code then
      a.code < b.code
    else if a.file != b.file then
      a.file < b.file
    else if a.pointer != b.pointer then
      a.pointer < b.pointer
    else
      a.message < b.message
  );

  finding = code: file: pointer: message: hint: host: {
    inherit code file pointer message hint host;
  };

  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  # Most strings lowered here (addresses, nameservers) have no capital letter: one regex
  # match costs a fifth of replaceStrings over 26 letters (which copies both lists into
  # strings on every call).  The strings are short (addresses, host names), so the regex
  # engine's per-character recursion stays shallow.
  toLower = s: if builtins.match "[^A-Z]*" s != null then s else builtins.replaceStrings upper lower s;

  reverseList = xs: builtins.genList (i: builtins.elemAt xs (builtins.length xs - 1 - i)) (builtins.length xs);
}
