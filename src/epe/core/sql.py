"""Reading a user's SQL: Oracle's dialect translated, OML's names found (docs/sql.md).

Pure: text in, text and a description of what it refers to out. The query is
parsed with sqlglot (imported here only, lazily: the server starts without it)
into a tree; references to OML's PYQ views are listed, calls of the ``pyq*``
table functions are cut out of the tree and replaced by a relation of a name
of our own, and the tree is written back in the data backend's dialect. Nothing
is ever pasted into the text: names and values travel as tree nodes.

Whether the result is read-only is not decided here: the data backend checks
the text this module writes (the translated query, not the original).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from epe.errors import InvalidRequest

if TYPE_CHECKING:
    from sqlglot import exp

Mode = Literal["auto", "oracle", "native"]
MODES: tuple[Mode, ...] = ("auto", "oracle", "native")

# OML's views, each computed per caller (epe.service.views).
VIEWS = ("USER_PYQ_SCRIPTS", "ALL_PYQ_SCRIPTS", "USER_PYQ_DATASTORES", "ALL_PYQ_DATASTORES",
         "ALL_PYQ_DATASTORE_CONTENTS")

# OML's table functions and their parameters in positional order (Autonomous Database).
FUNCTIONS: dict[str, tuple[str, ...]] = {
    "PYQEVAL": ("par_lst", "out_fmt", "scr_name", "scr_owner", "env_name"),
    "PYQTABLEEVAL": ("inp_nam", "par_lst", "out_fmt", "scr_name", "scr_owner", "env_name"),
    "PYQROWEVAL": ("inp_nam", "par_lst", "out_fmt", "row_num", "scr_name", "scr_owner",
                   "env_name"),
    "PYQGROUPEVAL": ("inp_nam", "par_lst", "out_fmt", "grp_col", "ord_col", "scr_name",
                     "scr_owner", "env_name"),
    "PYQINDEXEVAL": ("par_lst", "out_fmt", "times_num", "scr_name", "scr_owner", "env_name"),
    "PYQJOBSTATUS": ("job_id",),
    "PYQJOBRESULT": ("job_id", "out_fmt"),
}
# OML's spelling, for messages.
SPELLING = {name.upper(): name for name in (
    "pyqEval", "pyqTableEval", "pyqRowEval", "pyqGroupEval", "pyqIndexEval", "pyqJobStatus",
    "pyqJobResult")}

# The relations standing for views and function calls. For the one statement that
# reads them they come before a table of the same name (DuckDB's temporary views,
# PostgreSQL's WITH), so a user's table named so is not readable in a query that names
# OML's views or functions (docs/sql.md).
RELATION_PREFIX = "__epe_pyq_"
VIEW_PREFIX = "__epe_view_"

# A cheap look before parsing: a query that never says "pyq" refers to none of OML's
# names, and is handed to the backend untouched.
_MENTIONS = re.compile(r"pyq", re.IGNORECASE)

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Call:
    """One call of a ``pyq*`` table function, with its arguments by (lower-case) name."""

    function: str  # upper case: PYQEVAL, PYQJOBSTATUS...
    args: tuple[tuple[str, Scalar], ...]

    @property
    def name(self) -> str:
        return SPELLING[self.function]

    def arg(self, key: str) -> Scalar:
        return dict(self.args).get(key)


@dataclass(frozen=True)
class Statement:
    """A query as the backend will run it, and what it needs that is not a table."""

    sql: str
    views: tuple[tuple[str, str], ...] = ()  # (relation name, view name)
    calls: tuple[tuple[str, Call], ...] = ()  # (relation name, call)
    translated: bool = False  # read as Oracle's dialect


def mentions_pyq(text: str) -> bool:
    return _MENTIONS.search(text) is not None


def read(text: str, dialect: str, oracle: bool,
         has_table: Callable[[str], bool] = lambda _name: False) -> Statement:
    """``text`` parsed (as Oracle's SQL when ``oracle``, else as ``dialect``'s), its
    OML names found and replaced, written in ``dialect`` (sqlglot's name of it).

    A PYQ view's name that is also the name of one of the caller's own tables
    (``has_table``) means the table, as in Oracle, where a schema's own object is
    found before a public synonym."""
    import sqlglot
    from sqlglot.errors import ErrorLevel, SqlglotError, UnsupportedError

    source = "oracle" if oracle else dialect
    try:
        trees = [t for t in sqlglot.parse(text, read=source) if t is not None]
    except (SqlglotError, ValueError, RecursionError) as e:
        # RecursionError: a query nested deeper than the parser goes is refused as such.
        raise InvalidRequest(f"invalid SQL in input{' (read as Oracle SQL)' if oracle else ''}"
                             f": {_first_line(e)}") from None
    if len(trees) != 1:
        raise InvalidRequest(f"input must be one query; it holds {len(trees)} statements")
    tree = trees[0]
    views = _cut_views(tree, has_table)
    calls = _cut_calls(tree)
    if oracle:
        tree = _from_oracle(tree, dialect)
    try:
        sql = tree.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE,
                       identify=oracle and dialect == "postgres")
    except UnsupportedError as e:
        what = "this Oracle SQL has no translation" if oracle else "this SQL cannot be written"
        raise InvalidRequest(f"{what} for this data backend: {_first_line(e)}") from None
    except (SqlglotError, ValueError, RecursionError) as e:
        raise InvalidRequest(f"invalid SQL in input: {_first_line(e)}") from None
    return Statement(sql, views, calls, translated=oracle)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


# -- OML's names -------------------------------------------------------------------------


def _cut_views(tree: exp.Expr,
               has_table: Callable[[str], bool]) -> tuple[tuple[str, str], ...]:
    """The PYQ views the query reads (unqualified table names, matched ignoring case as
    Oracle matches unquoted names, not names of its own WITH clauses), each replaced
    by a relation of our own name aliased as the view."""
    from sqlglot import exp

    ctes = {c.alias_or_name.upper() for c in tree.find_all(exp.CTE)}
    found: dict[str, str] = {}
    for table in list(tree.find_all(exp.Table)):
        if not isinstance(table.this, exp.Identifier) or table.args.get("db"):
            continue
        name = table.name.upper()
        if name not in VIEWS or name in ctes:
            continue
        if name not in found and has_table(table.name):
            continue
        relation = found.setdefault(name, VIEW_PREFIX + name.lower())
        table.replace(_relation(relation, table.args.get("alias"), table.this))
    return tuple((relation, name) for name, relation in found.items())


def _relation(name: str, alias: exp.TableAlias | None,
              default: exp.Identifier) -> exp.Table:
    """A table of our own ``name`` (quoted: never case-folded), under the alias the
    query gave, else under the name the query used."""
    from sqlglot import exp

    table = exp.Table(this=exp.to_identifier(name, quoted=True))
    table.set("alias", alias if alias is not None else exp.TableAlias(this=default.copy()))
    return table


def _cut_calls(tree: exp.Expr) -> tuple[tuple[str, Call], ...]:
    """Every ``pyq*`` table function call replaced by a relation of our own name."""
    from sqlglot import exp

    calls: list[tuple[str, Call]] = []
    for table in list(tree.find_all(exp.Table)):
        function = _table_function(table)
        if function is None:
            continue
        relation = f"{RELATION_PREFIX}{len(calls) + 1}"
        calls.append((relation, _call(function)))
        # Unaliased, the relation goes by the function's name.
        table.replace(_relation(relation, table.args.get("alias"),
                                exp.to_identifier(SPELLING[_name(function)])))
    return tuple(calls)


def _name(function: exp.Expr) -> str:
    from sqlglot import exp

    if isinstance(function, exp.Anonymous):
        return str(function.this).upper()
    return str(function.sql_name()).upper()  # type: ignore[attr-defined]


def _table_function(table: exp.Table) -> exp.Expr | None:
    """The ``pyq*`` call a FROM item is, with or without Oracle's ``TABLE(...)``."""
    from sqlglot import exp

    node = table.this
    if isinstance(node, exp.Anonymous) and str(node.this).upper() == "TABLE" \
            and len(node.expressions) == 1:
        node = node.expressions[0]
    if not isinstance(node, exp.Func):
        return None
    name = _name(node)
    if name in FUNCTIONS:
        return node
    if name.startswith("PYQ"):
        known = ", ".join(SPELLING.values())
        raise InvalidRequest(f"no table function {name}; the ones there are: {known}")
    return None


def _call(function: exp.Expr) -> Call:
    from sqlglot import exp

    name = _name(function)
    params = FUNCTIONS[name]
    args: dict[str, Scalar] = {}
    items = function.expressions if isinstance(function, exp.Anonymous) else \
        [v for v in function.args.values() if isinstance(v, exp.Expr)]
    named = False
    for position, item in enumerate(items):
        if isinstance(item, exp.Kwarg | exp.PropertyEQ):
            key, named = str(item.this.name).lower(), True
            value = item.expression
        elif named:
            raise InvalidRequest(f"{SPELLING[name]}: a positional argument cannot follow "
                                 "a named one")
        else:
            if position >= len(params):
                raise InvalidRequest(f"{SPELLING[name]} takes at most {len(params)} arguments "
                                     f"({', '.join(params)})")
            key, value = params[position], item
        if key not in params:
            raise InvalidRequest(f"{SPELLING[name]} has no argument {key}; its arguments are "
                                 f"{', '.join(params)}")
        if key in args:
            raise InvalidRequest(f"{SPELLING[name]}: argument {key} is given twice")
        args[key] = _literal(name, key, value)
    return Call(name, tuple(args.items()))


def _literal(function: str, key: str, value: exp.Expr) -> Scalar:
    from sqlglot import exp

    if isinstance(value, exp.Null):
        return None
    if isinstance(value, exp.Boolean):
        return bool(value.this)
    if isinstance(value, exp.Literal):
        if value.is_string:
            return str(value.this)
        number = str(value.this)
        return int(number) if re.fullmatch(r"-?\d+", number) else float(number)
    if isinstance(value, exp.Neg) and isinstance(value.this, exp.Literal):
        inner = _literal(function, key, value.this)
        if isinstance(inner, int | float) and not isinstance(inner, bool):
            return -inner
    raise InvalidRequest(f"{SPELLING[function]}: argument {key} must be a literal (a string "
                         f"in quotes, a number or NULL), not {value.sql()}")


# -- Oracle's dialect ----------------------------------------------------------------------


def _from_oracle(tree: exp.Expr, dialect: str) -> exp.Expr:
    """What sqlglot leaves to us: DUAL, ROWNUM, hierarchical queries; and for PostgreSQL,
    Oracle's unquoted names upper-cased, as Oracle stores them."""
    from sqlglot import exp
    from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

    if tree.find(exp.Connect) is not None:
        raise InvalidRequest("this Oracle SQL has no translation: CONNECT BY (hierarchical "
                             "queries); write it as a recursive WITH query")
    for table in list(tree.find_all(exp.Table)):
        if table.name.upper() == "DUAL" and isinstance(table.this, exp.Identifier) \
                and not table.args.get("db"):
            table.replace(_dual(table))
    for select in list(tree.find_all(exp.Select)):
        _rownum_limit(select)
    for node in list(tree.find_all(exp.ToChar, exp.ToNumber, exp.DateTrunc)):
        _oracle_function(node)
    for number, subquery in enumerate(list(tree.find_all(exp.Subquery)), start=1):
        # Oracle (and DuckDB) take a subquery in FROM without a name; PostgreSQL wants one.
        if not subquery.alias and isinstance(subquery.parent, exp.From | exp.Join):
            subquery.set("alias", exp.TableAlias(
                this=exp.to_identifier(f"__epe_subquery_{number}", quoted=True)))
    if dialect == "postgres":
        if tree.find(exp.MonthsBetween) is not None:
            raise InvalidRequest("this Oracle SQL has no translation for PostgreSQL: "
                                 "MONTHS_BETWEEN; use age() and extract()")
        for months in list(tree.find_all(exp.AddMonths)):
            # Oracle's ADD_MONTHS: PostgreSQL adds months as an interval, keeping the day
            # or the month's last day when it has no such day.
            months.replace(exp.Add(this=months.this, expression=exp.Mul(
                this=exp.Paren(this=months.expression),
                expression=exp.Interval(this=exp.Literal.string("1"),
                                        unit=exp.var("MONTH")))))
    for column in list(tree.find_all(exp.Column)):
        if _is_rownum(column):
            if column.find_ancestor(exp.Where) is not None:
                raise InvalidRequest("this Oracle SQL has no translation: ROWNUM in a WHERE "
                                     "clause other than ROWNUM <= n, ROWNUM < n or ROWNUM = 1")
            row_number = exp.Window(this=exp.RowNumber())
            # Selected as such, the column is named ROWNUM, as in Oracle.
            column.replace(exp.alias_(row_number, "ROWNUM") if isinstance(column.parent, exp.Select)
                           else row_number)
    if dialect == "postgres":
        tree = normalize_identifiers(tree, dialect="oracle")
    return tree


# TRUNC(date, fmt)'s format models, as the units of DATE_TRUNC.
_TRUNC_UNITS = {"DD": "DAY", "DDD": "DAY", "J": "DAY", "DAY": "DAY", "MM": "MONTH",
                "MON": "MONTH", "MONTH": "MONTH", "RM": "MONTH", "YYYY": "YEAR",
                "YEAR": "YEAR", "YYY": "YEAR", "YY": "YEAR", "Y": "YEAR", "SYYYY": "YEAR",
                "Q": "QUARTER", "HH": "HOUR", "HH12": "HOUR", "HH24": "HOUR", "MI": "MINUTE",
                "IW": "WEEK", "WW": "WEEK"}
# A TO_CHAR format that is a number's (9s and 0s), not a date's.
_NUMBER_FORMAT = re.compile(r"[09.,$GDSLMIPRVXBEFM\s]*[09][09.,$GDSLMIPRVXBEFM\s]*", re.I)


def _oracle_function(node: exp.Expr) -> None:
    """TO_CHAR of a date, TO_NUMBER and TRUNC of a date as the targets have them (sqlglot
    leaves TO_CHAR of a column of unknown type, TO_NUMBER and TRUNC's units to us)."""
    from sqlglot import exp
    from sqlglot.dialects.oracle import Oracle
    from sqlglot.time import format_time

    fmt = node.args.get("format")
    if isinstance(node, exp.ToChar) and isinstance(fmt, exp.Literal):
        if _NUMBER_FORMAT.fullmatch(str(fmt.this)):
            raise InvalidRequest("this Oracle SQL has no translation: TO_CHAR with a number "
                                 f"format ({fmt.this}); use ROUND, or CAST(x AS VARCHAR)")
        python = format_time(str(fmt.this), Oracle.TIME_MAPPING, Oracle.TIME_TRIE)
        node.replace(exp.TimeToStr(this=node.this, format=exp.Literal.string(python)))
    elif isinstance(node, exp.ToNumber):
        if fmt is not None:
            raise InvalidRequest("this Oracle SQL has no translation: TO_NUMBER with a format "
                                 "model; give the number without separators")
        node.replace(exp.cast(node.this, exp.DataType.build("DOUBLE")))
    elif isinstance(node, exp.DateTrunc):
        unit = node.args.get("unit")
        if isinstance(unit, exp.Literal | exp.Var):
            name = str(unit.this).upper()
            if name not in _TRUNC_UNITS:
                raise InvalidRequest(f"this Oracle SQL has no translation: TRUNC(date, "
                                     f"'{unit.this}')")
            node.set("unit", exp.Literal.string(_TRUNC_UNITS[name]))


def _dual(table: exp.Table) -> exp.Expr:
    """Oracle's one-row DUAL as a subquery: ``(SELECT 'X' AS DUMMY) AS DUAL``."""
    from sqlglot import exp

    alias = table.alias or "DUAL"
    one = exp.select(exp.alias_(exp.Literal.string("X"), "DUMMY"))
    return exp.Subquery(this=one, alias=exp.TableAlias(this=exp.to_identifier(alias)))


def _is_rownum(node: exp.Expr) -> bool:
    from sqlglot import exp

    return isinstance(node, exp.Column) and not node.table and node.name.upper() == "ROWNUM" \
        and not node.this.args.get("quoted")


def _rownum_limit(select: exp.Select) -> None:
    """``WHERE ROWNUM <= n`` (or ``< n``, ``= 1``) as a LIMIT of the same query block.

    Oracle numbers rows before it sorts them, so with an ORDER BY in the same block
    the first rows would be other rows than a LIMIT's: refused rather than changed."""
    from sqlglot import exp

    where = select.args.get("where")
    if where is None:
        return
    conjuncts = list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this]
    limit, kept = None, []
    for c in conjuncts:
        n = _rownum_bound(c)
        if n is None:
            kept.append(c)
        else:
            limit = n if limit is None else min(limit, n)
    if limit is None:
        return
    if select.args.get("order") is not None:
        raise InvalidRequest("this Oracle SQL has no translation: ROWNUM with ORDER BY in the "
                             "same query (Oracle numbers the rows before sorting them); use "
                             "FETCH FIRST n ROWS ONLY, or sort in a subquery")
    select.set("where", exp.Where(this=exp.and_(*kept)) if kept else None)
    existing = select.args.get("limit")
    if isinstance(existing, exp.Limit) and isinstance(existing.expression, exp.Literal):
        limit = min(limit, int(existing.expression.this))
    select.set("limit", exp.Limit(expression=exp.Literal.number(max(limit, 0))))


def _rownum_bound(c: exp.Expr) -> int | None:
    from sqlglot import exp

    pairs: list[tuple[type[Any], Any, Any, int]] = [
        (exp.LTE, c.this, c.expression, 0), (exp.LT, c.this, c.expression, -1),
        (exp.GTE, c.expression, c.this, 0), (exp.GT, c.expression, c.this, -1),
        (exp.EQ, c.this, c.expression, 0)]
    for kind, left, right, shift in pairs:
        if isinstance(c, kind) and _is_rownum(left) and isinstance(right, exp.Literal) \
                and not right.is_string and re.fullmatch(r"\d+", str(right.this)):
            n = int(right.this)
            if kind is exp.EQ and n != 1:
                return None
            return n + shift
    return None
