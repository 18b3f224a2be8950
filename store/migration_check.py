"""The release check of SQL migrations: refuse one that the previous release's code, still
running during a blue-green deploy, would not survive.

During a deploy ``system2 migrate`` runs first (Fly's release command), then the new machines
start while the old ones still serve. So every migration must be **expand**-safe — old code
keeps working on the new schema — unless it is the **contract** step of an earlier expand,
shipped once no release that needs the old shape runs any more. Each file says which:

    -- kind: expand
    -- kind: contract
    -- contracts: 0007_quest_labels        (required on a contract: the expand it completes)

What counts as breaking (refused in an expand, or in a contract that names no valid expand):

- dropping a table, view, materialized view, function, procedure, type, domain, sequence,
  index, schema or role; TRUNCATE
- ALTER TABLE: DROP COLUMN, DROP CONSTRAINT, RENAME (the table, a column, a constraint),
  SET SCHEMA, ALTER COLUMN … TYPE (in place), ALTER COLUMN … SET NOT NULL, ALTER COLUMN …
  DROP DEFAULT, ADD COLUMN … NOT NULL (or PRIMARY KEY) without a DEFAULT, ADD CONSTRAINT /
  PRIMARY KEY / UNIQUE / CHECK / FOREIGN KEY / EXCLUDE, ENABLE or FORCE ROW LEVEL SECURITY
- renaming a view, function, type, sequence, index or schema; renaming or dropping an enum
  value or a type's attribute; REVOKE

Whatever the kind, a ``SECURITY DEFINER`` function or procedure must end up (after every
migration, in order) with a ``search_path`` that names ``pg_temp`` once, last.

Statements on an object created by the same file (a new table, function, view…, or a role
created in one of its DO blocks) are exempt: no old code knows it. So is a REVOKE from such a
role, or of membership in it. Expand-safe, for example: CREATE anything, ADD COLUMN nullable or with a
DEFAULT, ALTER COLUMN … DROP NOT NULL / SET DEFAULT, NO FORCE ROW LEVEL SECURITY, GRANT,
CREATE POLICY, CREATE INDEX, DROP POLICY / TRIGGER.

Limits (a statement splitter and regular expressions, not a SQL parser): statements are split
on ``;`` outside quotes, dollar-quoted bodies and comments. The bodies of ``DO`` blocks are
searched for the same breaking forms (dynamic SQL in string literals is searched too, which
may refuse more than needed); the bodies of CREATE FUNCTION are not (they run later, not at
migration time). Semantic breaks are not seen: a data migration (UPDATE/DELETE) that old code
disagrees with, a replaced function whose behaviour changed, a CREATE INDEX without
CONCURRENTLY that locks a busy table. When the check refuses something that is in fact safe,
mark it a contract step of the expand it follows — that is a reviewed decision.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_KIND = re.compile(r"^--\s*kind:\s*(\w+)", re.MULTILINE)
_CONTRACTS = re.compile(r"^--\s*contracts:\s*(.+)$", re.MULTILINE)
_IDENT = r'(?:"[^"]+"|[A-Za-z_][\w$]*)'
_QNAME = rf"{_IDENT}(?:\s*\.\s*{_IDENT})?"


@dataclass(frozen=True)
class Statement:
    text: str  # comments removed, string literals and dollar-quoted bodies emptied
    line: int  # 1-based line of the statement's first character
    bodies: tuple[str, ...] = ()  # the dollar-quoted bodies, verbatim (for DO blocks)
    strings: tuple[str, ...] = ()  # the string literals' values, in order (each '' in text)


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


@dataclass
class MigrationFile:
    path: Path
    version: int
    stem: str  # e.g. 0003_integrations
    kind: str | None
    contracts: list[str]
    sql: str


@dataclass
class CheckReport:
    checked: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# --- splitting -------------------------------------------------------------------------


_TOKEN = re.compile(
    r"(?P<line_comment>--[^\n]*)"
    r"|(?P<block_comment>/\*.*?\*/)"
    r"|(?P<string>'(?:[^']|'')*'?)"
    r'|(?P<ident>"(?:[^"]|"")*"?)'
    r"|(?P<body>\$(?P<tag>[A-Za-z_]\w*|)\$(?P<inner>.*?)(?:\$(?P=tag)\$|\Z))"
    r"|(?P<end>;)"
    r"|(?P<other>[^;'\"$/-]+|.)",
    re.DOTALL,
)


def split_statements(sql: str) -> list[Statement]:
    """Split ``sql`` into statements on ``;`` outside literals, bodies and comments.
    (Block comments do not nest here, as they may in Postgres.)"""
    out: list[Statement] = []
    buf: list[str] = []
    bodies: list[str] = []
    strings: list[str] = []
    start = 0  # line of the statement's first token; 0 while none
    line = 1
    for m in _TOKEN.finditer(sql):
        kind, tok = m.lastgroup, m.group(0)
        if kind in ("tag", "inner"):
            kind = "body"
        if kind == "end":
            text = " ".join("".join(buf).split())
            if text:
                out.append(Statement(text, start, tuple(bodies), tuple(strings)))
            buf, bodies, strings, start = [], [], [], 0
        elif kind not in ("line_comment", "block_comment"):
            if not start and tok.strip():
                start = line + tok[: len(tok) - len(tok.lstrip())].count("\n")
            if kind == "string":
                buf.append(" '' ")
                strings.append(tok[1:].removesuffix("'").replace("''", "'"))
            elif kind == "body":
                bodies.append(m.group("inner") or "")
                buf.append(" $body$ ")
            else:
                buf.append(tok)
        else:
            buf.append(" ")
        line += tok.count("\n")
    text = " ".join("".join(buf).split())
    if text:
        out.append(Statement(text, start, tuple(bodies), tuple(strings)))
    return out


# --- names -----------------------------------------------------------------------------


def norm(name: str) -> str:
    """An object name as Postgres resolves it: unquoted folds to lower case, ``public.``
    dropped, argument lists of functions dropped."""
    name = name.split("(", 1)[0].strip()
    parts = [p.strip() for p in re.findall(r'"[^"]+"|[^.\s]+', name)]
    folded = [p[1:-1] if p.startswith('"') else p.lower() for p in parts]
    if len(folded) == 2 and folded[0] == "public":
        folded = folded[1:]
    return ".".join(folded)


_CREATES = re.compile(
    rf"^CREATE\s+(?:(?:GLOBAL\s+|LOCAL\s+)?(?:TEMPORARY|TEMP|UNLOGGED)\s+)?"
    rf"(?P<what>TABLE|VIEW|MATERIALIZED\s+VIEW|FUNCTION|PROCEDURE|TYPE|DOMAIN|SEQUENCE|"
    rf"(?:UNIQUE\s+)?INDEX(?:\s+CONCURRENTLY)?|SCHEMA|ROLE)\s+"
    rf"(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>{_QNAME})",
    re.IGNORECASE,
)


# A role is cluster-wide, so a migration creates it in a DO block, only if it is missing.
_CREATE_ROLE_IN_DO = re.compile(rf"\bCREATE\s+ROLE\s+({_IDENT})", re.IGNORECASE)


def created_objects(statements: Iterable[Statement]) -> set[str]:
    """Names this file creates (``CREATE OR REPLACE`` does not count: it may replace), and
    the roles its DO blocks create."""
    names = set()
    for st in statements:
        m = _CREATES.match(st.text)
        if m:
            names.add(norm(m["name"]))
        if st.text.upper().startswith("DO"):
            for body in st.bodies:
                names.update(norm(r) for r in _CREATE_ROLE_IN_DO.findall(_strip_comments(body)))
    return names


# --- classifying -----------------------------------------------------------------------

_DROP = re.compile(
    r"^DROP\s+(?P<what>TABLE|VIEW|MATERIALIZED\s+VIEW|FUNCTION|PROCEDURE|ROUTINE|AGGREGATE|"
    r"TYPE|DOMAIN|SEQUENCE|INDEX|SCHEMA|ROLE|USER|EXTENSION)\s+(?:CONCURRENTLY\s+)?"
    r"(?:IF\s+EXISTS\s+)?(?P<names>.+?)(?:\s+(?:CASCADE|RESTRICT))?$",
    re.IGNORECASE,
)
_ALTER_TABLE = re.compile(
    rf"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?(?P<name>{_QNAME})\s*\*?\s+(?P<actions>.+)$",
    re.IGNORECASE,
)
_ALTER_OTHER = re.compile(
    rf"^ALTER\s+(?P<what>VIEW|MATERIALIZED\s+VIEW|FUNCTION|PROCEDURE|ROUTINE|TYPE|DOMAIN|"
    rf"SEQUENCE|INDEX|SCHEMA)\s+(?:IF\s+EXISTS\s+)?(?P<name>{_QNAME}(?:\s*\([^)]*\))?)\s+"
    rf"(?P<rest>.+)$",
    re.IGNORECASE,
)
_REVOKE = re.compile(
    r"^REVOKE\s+.+?\s+ON\s+(?:(?:TABLE|FUNCTION|PROCEDURE|ROUTINE|SEQUENCE|SCHEMA|TYPE|DOMAIN)\s+)?"
    r"(?P<names>.+?)\s+FROM\s+",
    re.IGNORECASE,
)
# REVOKE role FROM grantee (a membership), or REVOKE rights ON things FROM grantees.
_REVOKE_FROM = re.compile(
    r"^REVOKE\s+(?:GRANT\s+OPTION\s+FOR\s+|ADMIN\s+OPTION\s+FOR\s+)?(?P<what>.+?)\s+"
    r"(?:ON\s+.+?\s+)?FROM\s+(?P<grantees>.+?)(?:\s+(?:CASCADE|RESTRICT))?$",
    re.IGNORECASE,
)
_DO_BODY_BREAKS = re.compile(
    r"\bDROP\s+(?:TABLE|VIEW|MATERIALIZED\s+VIEW|FUNCTION|PROCEDURE|TYPE|DOMAIN|SEQUENCE|"
    r"INDEX|SCHEMA|ROLE|COLUMN|CONSTRAINT)\b|\bRENAME\b|\bSET\s+DATA\s+TYPE\b|"
    r"\bALTER\s+COLUMN\s+\S+\s+TYPE\b|\bSET\s+NOT\s+NULL\b|\bTRUNCATE\b|\bREVOKE\b",
    re.IGNORECASE,
)


def breaking(st: Statement, created: set[str]) -> list[str]:
    """Why ``st`` would break the previous release's code (empty when it would not)."""
    head = st.text.split(None, 1)[0].upper() if st.text else ""
    handler = _HANDLERS.get(head)
    return handler(st, created) if handler else []


def _breaking_drop(st: Statement, created: set[str]) -> list[str]:
    m = _DROP.match(st.text)
    if not m:
        return []
    what = " ".join(m["what"].lower().split())
    gone = [x for x in (norm(n) for n in _split_top(m["names"])) if x not in created]
    if not gone:
        return []
    return [f"drops {what} {', '.join(gone)}: the previous release may still use it"]


def _breaking_alter(st: Statement, created: set[str]) -> list[str]:
    m = _ALTER_TABLE.match(st.text)
    if m:
        table = norm(m["name"])
        if table in created:
            return []
        return [f"{r} (table {table})" for r in _breaking_table_actions(m["actions"])]
    m = _ALTER_OTHER.match(st.text)
    if not m or norm(m["name"]) in created:
        return []
    what = f"{' '.join(m['what'].lower().split())} {norm(m['name'])}"
    for pattern, reason in _OTHER_ALTERS:
        if re.match(pattern, m["rest"], re.IGNORECASE):
            return [reason.format(what=what)]
    return []


_OTHER_ALTERS = (
    (r"RENAME\b", "renames {what}: the previous release uses its name"),
    (r"SET\s+SCHEMA\b", "moves {what} to another schema"),
    (r"(?:DROP|ALTER)\s+ATTRIBUTE\b", "changes the attributes of {what} in place"),
)


def _breaking_truncate(st: Statement, created: set[str]) -> list[str]:
    return ["TRUNCATE deletes rows the previous release still reads"]


def _breaking_revoke(st: Statement, created: set[str]) -> list[str]:
    if _revokes_only_new(st.text, created):
        return []
    return ["REVOKE takes away rights the previous release may use"]


def _revokes_only_new(statement: str, created: set[str]) -> bool:
    """A REVOKE that no old code can miss: of rights on objects this file creates, of rights
    held only by roles it creates, or of membership in a role it creates."""
    m = _REVOKE.match(statement)
    targets = {norm(t) for t in _split_top(m["names"])} if m else set()
    if targets and targets <= created:
        return True
    m = _REVOKE_FROM.match(statement)
    if not m:
        return False
    grantees = {norm(g) for g in _split_top(m["grantees"])}
    if grantees and grantees <= created:
        return True
    membership = " ON " not in f" {statement.upper()} "
    return membership and {norm(r) for r in _split_top(m["what"])} <= created


def _breaking_do(st: Statement, created: set[str]) -> list[str]:
    return [
        f"a DO block runs {' '.join(hit.group(0).upper().split())}"
        for body in st.bodies
        for text in [_strip_comments(body)]
        for hit in _DO_BODY_BREAKS.finditer(text)
        if not _revokes_only_created(text[hit.start() :], created)
    ]


def _revokes_only_created(text: str, created: set[str]) -> bool:
    """A REVOKE (in a DO body, often dynamic SQL in a literal) on objects this file creates:
    no old code knows them (e.g. taking back Supabase's default grants on a new table)."""
    statement = re.split(r"[';]", text, maxsplit=1)[0]
    return _revokes_only_new(" ".join(statement.split()), created)


_HANDLERS = {
    "DROP": _breaking_drop,
    "ALTER": _breaking_alter,
    "TRUNCATE": _breaking_truncate,
    "REVOKE": _breaking_revoke,
    "DO": _breaking_do,
}

# ALTER TABLE actions, first match wins: (pattern on the upper-cased action, reason or None).
# ``{col}`` is the column the action names.
_TABLE_ACTIONS: tuple[tuple[str, str | None], ...] = (
    (r"RENAME\b", "renames the table or one of its columns or constraints"),
    (r"SET\s+SCHEMA\b", "moves the table to another schema"),
    (
        r"DROP\s+CONSTRAINT\b",
        "drops a constraint (an ON CONFLICT of the previous release may rely on it)",
    ),
    (r"DROP\b", "drops column {col}"),
    (
        r"ADD\s+(?:CONSTRAINT|PRIMARY\s+KEY|UNIQUE|CHECK|FOREIGN\s+KEY|EXCLUDE)\b",
        "adds a constraint that writes of the previous release may violate",
    ),
    (
        r"ADD\b(?!.*\b(?:DEFAULT|GENERATED)\b).*\b(?:NOT\s+NULL|PRIMARY\s+KEY)\b",
        "adds NOT NULL column {col} without a DEFAULT: inserts of the previous release would fail",
    ),
    (r"ADD\b", None),
    (r"ALTER\b.*\bSET\s+(?:STATISTICS|STORAGE|COMPRESSION)\b", None),
    (r"ALTER\b.*\b(?:SET\s+DATA\s+)?TYPE\b", "changes the type of column {col} in place"),
    (
        r"ALTER\b.*\bSET\s+NOT\s+NULL\b",
        "makes column {col} NOT NULL: inserts of the previous release may omit it",
    ),
    (
        r"ALTER\b.*\bDROP\s+DEFAULT\b",
        "drops the DEFAULT of column {col}: the previous release may rely on it",
    ),
    (r"ALTER\b.*\bDROP\s+(?:EXPRESSION|IDENTITY)\b", "changes how column {col} gets its value"),
    (
        r"(?:ENABLE|FORCE)\s+ROW\s+LEVEL\s+SECURITY\b",
        "turns on row-level security the previous release's queries were not written for",
    ),
)


def _breaking_table_actions(actions: str) -> Iterator[str]:
    for action in _split_top(actions):
        a = " ".join(action.split())
        up = a.upper()
        for pattern, reason in _TABLE_ACTIONS:
            if re.match(pattern, up):
                if reason:
                    yield reason.format(col=_column_of(a, up.split(None, 1)[0]))
                break


def _column_of(action: str, verb: str) -> str:
    m = re.match(
        rf"{verb}\s+(?:COLUMN\s+)?(?:IF\s+(?:NOT\s+)?EXISTS\s+)?({_IDENT})", action, re.IGNORECASE
    )
    return norm(m.group(1)) if m else "?"


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for c in text:
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
    if "".join(cur).strip():
        parts.append("".join(cur).strip())
    return parts


def _strip_comments(body: str) -> str:
    body = re.sub(r"/\*.*?\*/", " ", body, flags=re.DOTALL)
    return re.sub(r"--[^\n]*", " ", body)


# --- owner-rights functions ------------------------------------------------------------
#
# A SECURITY DEFINER function runs with its owner's rights. Unless its search_path ends in
# pg_temp, the caller's temporary schema is searched first, so a temporary view or table of
# the caller's can stand in for any name the body leaves unqualified and run the caller's code
# as the owner. Checked across files, because a later migration may pin what an earlier one
# left open (CREATE OR REPLACE sets every attribute again; ALTER changes the ones it names).

_ROUTINE = r"(?:FUNCTION|PROCEDURE|ROUTINE)"
_CREATE_ROUTINE = re.compile(
    rf"^CREATE\s+(?:OR\s+REPLACE\s+)?{_ROUTINE}\s+(?P<name>{_QNAME})", re.IGNORECASE
)
_ALTER_ROUTINE = re.compile(rf"^ALTER\s+{_ROUTINE}\s+(?P<name>{_QNAME})", re.IGNORECASE)
_DROP_ROUTINE = re.compile(
    rf"^DROP\s+{_ROUTINE}\s+(?:IF\s+EXISTS\s+)?(?P<names>.+?)(?:\s+(?:CASCADE|RESTRICT))?$",
    re.IGNORECASE,
)
_SECURITY = re.compile(r"\bSECURITY\s+(DEFINER|INVOKER)\b", re.IGNORECASE)
_PATH_ITEM = r"(?:''|\"[^\"]*\"|[^\s,'\"]+)"
_SET_PATH = re.compile(
    rf"\bSET\s+search_path\s*(?:=|\bTO\b)\s*(?P<items>{_PATH_ITEM}(?:\s*,\s*{_PATH_ITEM})*)",
    re.IGNORECASE,
)
_RESET_PATH = re.compile(r"\bRESET\s+(?:search_path|ALL)\b", re.IGNORECASE)


@dataclass
class _Routine:
    definer: bool
    search_path: list[str] | None  # None: not set on the function (the caller's applies)
    where: tuple[str, int]


def _search_path(st: Statement) -> list[str] | None:
    """The schemas a ``SET search_path`` clause names, as Postgres reads them: an identifier
    folded, a quoted identifier or a string literal taken as one name each (so
    ``'a, b'`` is one schema named "a, b")."""
    m = _SET_PATH.search(st.text)
    if not m:
        return None
    literal = st.text[: m.start("items")].count("''")
    names = []
    for item in re.findall(_PATH_ITEM, m["items"]):
        if item == "''":
            names.append(st.strings[literal] if literal < len(st.strings) else "")
            literal += 1
        elif item.startswith('"'):
            names.append(item[1:-1])
        else:
            names.append(item.lower())
    return names


def pg_temp_last(search_path: list[str] | None) -> bool:
    """Whether a search_path searches the caller's temporary schema last: named once, at the
    end (Postgres keeps a schema's first place, so ``pg_temp, x, pg_temp`` searches it first)."""
    if not search_path:
        return False
    return search_path.count("pg_temp") == 1 and search_path[-1] == "pg_temp"


def _track_routine(st: Statement, where: tuple[str, int], routines: dict[str, _Routine]) -> None:
    created = _CREATE_ROUTINE.match(st.text)
    if created:
        security = _SECURITY.search(st.text)
        routines[norm(created["name"])] = _Routine(
            bool(security and security[1].upper() == "DEFINER"), _search_path(st), where
        )
        return
    dropped = _DROP_ROUTINE.match(st.text)
    if dropped:
        for name in _split_top(dropped["names"]):
            routines.pop(norm(name), None)
        return
    altered = _ALTER_ROUTINE.match(st.text)
    routine = routines.get(norm(altered["name"])) if altered else None
    if routine is None:
        return
    security = _SECURITY.search(st.text)
    if security:
        routine.definer = security[1].upper() == "DEFINER"
    if _RESET_PATH.search(st.text):
        routine.search_path = None
    path = _search_path(st)
    if path is not None:
        routine.search_path = path
    routine.where = where


def definer_problems(files: Iterable[MigrationFile]) -> list[Problem]:
    """Every SECURITY DEFINER function or procedure, as the migrations leave it, whose
    search_path does not search pg_temp last."""
    routines: dict[str, _Routine] = {}
    for mig in files:
        for st in split_statements(mig.sql):
            _track_routine(st, (mig.path.name, st.line), routines)
    problems = []
    for name, r in sorted(routines.items()):
        if r.definer and not pg_temp_last(r.search_path):
            shown = "not set" if r.search_path is None else ", ".join(r.search_path) or "''"
            problems.append(
                Problem(
                    *r.where,
                    f"SECURITY DEFINER {name} runs with its owner's rights and its search_path "
                    f"({shown}) does not search pg_temp last: a caller's temporary object could stand "
                    "in for a name it uses — SET search_path = pg_catalog, pg_temp and "
                    "schema-qualify every name",
                )
            )
    return problems


# --- files -----------------------------------------------------------------------------


def read_dir(directory: Path) -> tuple[list[MigrationFile], list[Problem]]:
    files, problems = [], []
    for path in sorted(directory.glob("*.sql")):
        m = NAME.match(path.name)
        if not m:
            problems.append(
                Problem(
                    path.name, 1, "not named NNNN_lowercase_name.sql: `system2 migrate` skips it"
                )
            )
            continue
        text = path.read_text(encoding="utf-8")
        header = _header(text)
        kind = _KIND.search(header)
        contracts = _CONTRACTS.search(header)
        files.append(
            MigrationFile(
                path,
                int(m[1]),
                path.stem,
                kind[1].lower() if kind else None,
                [c.strip() for c in contracts[1].split(",") if c.strip()] if contracts else [],
                text,
            )
        )
    return files, problems


def _header(text: str) -> str:
    """The leading comment lines, where ``-- kind:`` and ``-- contracts:`` belong."""
    lines = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("--"):
            break
        lines.append(line.strip())
    return "\n".join(lines)


def check_file(mig: MigrationFile, by_stem: dict[str, MigrationFile]) -> list[Problem]:
    name = mig.path.name
    if mig.kind not in ("expand", "contract"):
        return [
            Problem(
                name,
                1,
                "does not state its kind: start it with '-- kind: expand' or '-- kind: contract'",
            )
        ]
    problems = _contract_problems(mig, by_stem) if mig.kind == "contract" else []
    if mig.kind == "contract" and not problems:
        return []  # a valid contract step may break what its expand made obsolete
    if mig.kind == "contract":
        hint = "fix the '-- contracts:' line above"
    else:
        hint = (
            "old code still runs during a blue-green deploy; ship it as '-- kind: contract' "
            "with '-- contracts: NNNN_<the expand>' once no release needs the old shape"
        )
    statements = split_statements(mig.sql)
    # A name an earlier migration created is not this file's, whatever its DO blocks say: a
    # role "created" only if missing (IF NOT EXISTS) may well exist, with old code using it.
    earlier = {
        name
        for other in by_stem.values()
        if other.version < mig.version
        for name in created_objects(split_statements(other.sql))
    }
    created = created_objects(statements) - earlier
    for st in statements:
        problems.extend(Problem(name, st.line, f"{r} — {hint}") for r in breaking(st, created))
    return problems


def _contract_problems(mig: MigrationFile, by_stem: dict[str, MigrationFile]) -> list[Problem]:
    name = mig.path.name
    if not mig.contracts:
        return [
            Problem(
                name, 1, "a contract must name the expand it completes: '-- contracts: NNNN_name'"
            )
        ]
    problems = []
    for ref in mig.contracts:
        target = _resolve(ref, by_stem)
        if target is None:
            problems.append(Problem(name, 1, f"contracts {ref}, which does not exist"))
        elif target.kind != "expand":
            problems.append(Problem(name, 1, f"contracts {ref}, which is not an expand"))
        elif target.version >= mig.version:
            problems.append(Problem(name, 1, f"contracts {ref}, which does not come before it"))
    return problems


def _resolve(ref: str, by_stem: dict[str, MigrationFile]) -> MigrationFile | None:
    ref = ref.removesuffix(".sql")
    if ref in by_stem:
        return by_stem[ref]
    if re.fullmatch(r"\d{1,4}", ref):
        for mig in by_stem.values():
            if mig.version == int(ref):
                return mig
    return None


def check_directory(directory: Path) -> CheckReport:
    files, problems = read_dir(directory)
    report = CheckReport(checked=[f.path.name for f in files], problems=list(problems))
    by_stem = {f.stem: f for f in files}
    versions = [f.version for f in files]
    for v in sorted({v for v in versions if versions.count(v) > 1}):
        report.problems.append(Problem(f"{v:04d}_*.sql", 1, "two migrations share a version"))
    for mig in files:
        report.problems.extend(check_file(mig, by_stem))
    report.problems.extend(definer_problems(files))
    return report


def project_migrations_dir() -> Path:
    import store

    return Path(store.__file__).parent / "migrations"
