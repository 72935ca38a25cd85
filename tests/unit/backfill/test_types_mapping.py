"""Source types to exact Arrow types, Arrow to each target's types, and the overrides (--cast,
--exclude) in the request, the CLI, the operators and the UI form. Pure logic: no services."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError

from airflow_mesh.backfill.convert import META_SELECT
from airflow_mesh.backfill.errors import PlanError, TargetWriteError, TypeMappingError
from airflow_mesh.backfill.plan import BackfillRequest, job_id, parse_casts
from airflow_mesh.backfill.targets import _write_error
from airflow_mesh.backfill.types import (
    ES_IGNORE_ABOVE,
    UnboundedNumericError,
    elasticsearch_mapping,
    family,
    holds,
    iceberg_type,
    json_storage_type,
    length,
    mariadb_field,
    postgres_ddl_type,
    postgres_field,
    postgres_storage_type,
)

ROOT = Path(__file__).resolve().parents[3]


def select(field: pa.Field) -> str:
    return field.metadata[META_SELECT].decode()


# ------------------------------------------------------------------------------------ PostgreSQL

@pytest.mark.parametrize(("spelled", "kind", "arrow", "kind_of"), [
    ("smallint", "b", pa.int16(), None), ("integer", "b", pa.int32(), None), ("bigint", "b", pa.int64(), None),
    ("numeric(12,2)", "b", pa.decimal128(12, 2), None), ("numeric(50,20)", "b", pa.decimal256(50, 20), None),
    ("numeric(10)", "b", pa.decimal128(10, 0), None),
    ("numeric(2,5)", "b", pa.decimal128(5, 5), None), ("numeric(5,-2)", "b", pa.decimal128(7, 0), None),
    ("real", "b", pa.float32(), None), ("double precision", "b", pa.float64(), None),
    ("money", "b", pa.decimal128(19, 2), "money"),
    ("text", "b", pa.string(), None), ("character varying(64)", "b", pa.string(), "varchar"),
    ("character(5)", "b", pa.string(), "char"), ('"char"', "b", pa.string(), "qchar"),
    ("name", "b", pa.string(), "name"),
    ("bytea", "b", pa.binary(), None),
    ("date", "b", pa.date32(), None), ("time without time zone", "b", pa.time64("us"), None),
    ("time(3) without time zone", "b", pa.time64("us"), None), ("time with time zone", "b", pa.string(), "timetz"),
    ("timestamp(3) without time zone", "b", pa.timestamp("us"), None),
    ("timestamp with time zone", "b", pa.timestamp("us", tz="UTC"), None),
    ("interval", "b", pa.month_day_nano_interval(), None),
    ("interval day to second(3)", "b", pa.month_day_nano_interval(), None),
    ("boolean", "b", pa.bool_(), None), ("uuid", "b", pa.uuid(), None),
    ("json", "b", pa.string(), "json"), ("jsonb", "b", pa.string(), "jsonb"), ("xml", "b", pa.string(), "xml"),
    ("inet", "b", pa.string(), "inet"), ("cidr", "b", pa.string(), "cidr"), ("macaddr", "b", pa.string(), "macaddr"),
    ("macaddr8", "b", pa.string(), "macaddr8"),
    ("bit(3)", "b", pa.string(), "bit"), ("bit varying(16)", "b", pa.string(), "varbit"),
    ("tsvector", "b", pa.string(), "tsvector"), ("tsquery", "b", pa.string(), "tsquery"),
    ("point", "b", pa.string(), "point"), ("polygon", "b", pa.string(), "polygon"),
    ("circle", "b", pa.string(), "circle"),
    ("int4range", "r", pa.string(), "int4range"), ("tstzmultirange", "m", pa.string(), "tstzmultirange"),
    ("pg_lsn", "b", pa.string(), "pg_lsn"), ("oid", "b", pa.int64(), None),
    ("mood", "e", pa.string(), "enum"), ("address", "c", pa.string(), "composite"),
    ("text[]", "b", pa.list_(pa.string()), None), ("integer[]", "b", pa.list_(pa.int32()), None),
    ("numeric(10,2)[]", "b", pa.list_(pa.decimal128(10, 2)), None), ("uuid[]", "b", pa.list_(pa.uuid()), None),
    ("inet[]", "b", pa.list_(pa.string()), "inet"), ("mood[]", "e", pa.list_(pa.string()), "enum"),
    ("timestamp with time zone[]", "b", pa.list_(pa.timestamp("us", tz="UTC")), None),
])
def test_every_postgres_type_with_an_exact_equivalent_maps(spelled, kind, arrow, kind_of):
    field = postgres_field("c", spelled, kind, kind, builtin=kind in ("b", "r", "m"))
    assert field.type == arrow
    assert family(field) == kind_of


def test_postgres_selects_what_adbc_reads_exactly():
    # uuid: ADBC's arrow.uuid as it is (the string cast crashed every target: "Invalid UTF8 payload").
    assert select(postgres_field("u", "uuid")) == '"u" AS "u"'
    # Types ADBC has no Arrow type for travel as PostgreSQL's own text; decimals too (cheaper).
    assert select(postgres_field("a", "cidr")) == '"a"::text AS "a"'
    assert select(postgres_field("a", "inet")) == 'inet_out("a")::text AS "a"'  # not 1.2.3.4/32 for a host
    assert select(postgres_field("n", "numeric(12,2)")) == '"n"::text AS "n"'
    assert select(postgres_field("m", "money")) == '"m"::numeric::text AS "m"'
    assert select(postgres_field("o", "oid")) == '"o"::bigint AS "o"'
    assert select(postgres_field("e", "mood[]", "e", "e", builtin=False)).startswith('"e"::text[] AS "e", CASE WHEN '
                                                                                     'array_ndims("e") > 1')
    # Awkward names are one quoted identifier.
    assert select(postgres_field('Order "Date"', "date")) == '"Order ""Date""" AS "Order ""Date"""'


def test_char_and_varchar_keep_their_length_for_the_targets():
    assert length(postgres_field("c", "character varying(64)")) == 64
    assert length(postgres_field("c", "character(5)")) == 5
    assert length(postgres_field("c", "bit(3)")) == 3
    assert length(postgres_field("c", "text")) is None


def test_numeric_without_precision_is_refused_saying_which_cast_would_hold_it():
    with pytest.raises(UnboundedNumericError,
                       match=r"column 'x': numeric has no precision and scale.*--cast x=numeric"):
        postgres_field("x", "numeric")
    with pytest.raises(UnboundedNumericError) as raised:
        postgres_field("x", "numeric[]")
    assert raised.value.array


def test_an_extension_type_is_refused_with_the_override_that_would_work():
    with pytest.raises(TypeMappingError, match=r"column 'h': type 'hstore' .*--cast h=text .*--exclude h"):
        postgres_field("h", "hstore", "b", builtin=False)


def test_a_cast_types_the_column_by_its_spelling_and_checks_that_no_value_changes():
    field = postgres_field("amount", "numeric", cast="numeric(38,20)")
    assert field.type == pa.decimal128(38, 20)
    sql = select(field)
    assert sql.startswith('CAST("amount" AS DECIMAL(38, 20))::text AS "amount", ')
    # Cast back to the column's own type: a value the cast rounded compares unequal, and the row fails.
    assert 'CASE WHEN CAST(CAST("amount" AS DECIMAL(38, 20)) AS numeric) IS DISTINCT FROM "amount"' in sql
    # A cast to text is the value's exact text: nothing to check.
    assert select(postgres_field("shape", "polygon", cast="text")) == 'CAST("shape" AS TEXT) AS "shape"'
    assert postgres_field("t", "text", cast="varchar(10)").type == pa.string()  # checked: varchar(n) cuts
    assert "CASE WHEN" in select(postgres_field("t", "text", cast="varchar(10)"))
    with pytest.raises(TypeMappingError, match="--cast x=numeric has no precision and scale"):
        postgres_field("x", "double precision", cast="numeric")


# --------------------------------------------------------------------------------------- MariaDB

@pytest.mark.parametrize(("spelled", "arrow", "kind_of"), [
    ("tinyint(4)", pa.int8(), None), ("tinyint(3) unsigned", pa.uint8(), None), ("smallint(6)", pa.int16(), None),
    ("smallint(5) unsigned", pa.uint16(), None), ("mediumint(9)", pa.int32(), None),
    ("mediumint(8) unsigned", pa.int32(), None), ("int(11)", pa.int32(), None), ("int(10) unsigned", pa.uint32(), None),
    ("bigint(20)", pa.int64(), None), ("bigint(20) unsigned", pa.uint64(), None),
    ("int(10) unsigned zerofill", pa.uint32(), None),
    ("tinyint(1)", pa.bool_(), None),
    ("decimal(10,2)", pa.decimal128(10, 2), None), ("decimal(65,30)", pa.decimal256(65, 30), None),
    ("decimal(10,2) unsigned", pa.decimal128(10, 2), None),
    ("float", pa.float32(), None), ("double", pa.float64(), None), ("float(7,3)", pa.float32(), None),
    ("bit(1)", pa.bool_(), None), ("bit(12)", pa.int64(), None), ("bit(64)", pa.uint64(), None),
    ("year(4)", pa.int16(), None), ("year", pa.int16(), None),
    ("date", pa.date32(), None), ("time", pa.time64("us"), None), ("time(6)", pa.time64("us"), None),
    ("datetime(6)", pa.timestamp("us"), None), ("datetime", pa.timestamp("us"), None),
    ("timestamp(6)", pa.timestamp("us", tz="UTC"), None),
    ("char(5)", pa.string(), "varchar"), ("varchar(255)", pa.string(), "varchar"), ("tinytext", pa.string(), None),
    ("text", pa.string(), None), ("mediumtext", pa.string(), None), ("longtext", pa.string(), None),
    ("binary(4)", pa.binary(), None), ("varbinary(64)", pa.binary(), None), ("tinyblob", pa.binary(), None),
    ("blob", pa.binary(), None), ("mediumblob", pa.binary(), None), ("longblob", pa.binary(), None),
    ("enum('a','b c')", pa.string(), "enum"), ("set('x','y')", pa.string(), "set"),
    ("geometry", pa.binary(), "geometry"), ("point", pa.binary(), "geometry"), ("polygon", pa.binary(), "geometry"),
    ("inet4", pa.string(), "ipaddr"), ("inet6", pa.string(), "ipaddr"), ("uuid", pa.uuid(), None),
])
def test_every_mariadb_type_maps(spelled, arrow, kind_of):
    field = mariadb_field("c", spelled)
    assert field.type == arrow
    assert family(field) == kind_of


def test_mariadb_json_is_its_text():
    field = mariadb_field("j", "longtext", is_json=True)
    assert field.type == pa.string() and family(field) == "json"


def test_mariadb_selects_decimals_dates_and_timestamps_exactly():
    # ConnectorX reads DECIMAL through a 28-digit type with 10 decimals (decimal(20,15) lost 5 of
    # them, decimal(65,30) panicked), and panics on zero dates: both travel as MariaDB's text.
    assert select(mariadb_field("d", "decimal(20,15)")) == "CAST(`d` AS CHAR) AS `d`"
    assert select(mariadb_field("d", "date")) == "CAST(`d` AS CHAR) AS `d`"
    # TIMESTAMP as its seconds since 1970: independent of the session's time zone.
    assert "UNIX_TIMESTAMP(`t`)" in select(mariadb_field("t", "timestamp(6)"))
    assert select(mariadb_field("b", "bit(12)")) == "CAST(`b` AS UNSIGNED) AS `b`"
    assert select(mariadb_field("g", "geometry")) == "CAST(`g` AS BINARY) AS `g`"
    field = mariadb_field("price", "double", cast="decimal(20,4)")
    assert field.type == pa.decimal128(20, 4)
    assert select(field) == ("CAST(CAST(`price` AS DECIMAL(20, 4)) AS CHAR) AS `price`, CASE WHEN NOT "
                             "(CAST(`price` AS DECIMAL(20, 4)) <=> `price`) THEN CAST(`price` AS CHAR) END "
                             "AS `__mesh_check_price`")


# -------------------------------------------------------------------------------------- targets

def test_iceberg_types():
    assert [iceberg_type(pa.field("c", t)) for t in (pa.int8(), pa.int16(), pa.uint16(), pa.uint32(), pa.uint64())] \
        == [pa.int32(), pa.int32(), pa.int32(), pa.int64(), pa.decimal128(20, 0)]
    assert iceberg_type(pa.field("c", pa.uuid())) == pa.uuid()
    assert iceberg_type(pa.field("c", pa.time64("us"))) == pa.time64("us")
    assert iceberg_type(pa.field("c", pa.list_(pa.int16()))) == pa.list_(pa.int32())
    # No Iceberg type: the exact text.
    assert iceberg_type(pa.field("c", pa.decimal256(50, 20))) == pa.string()
    assert iceberg_type(pa.field("c", pa.month_day_nano_interval())) == pa.string()


@pytest.mark.parametrize(("actual", "expected", "held"), [
    (pa.int32(), pa.int16(), True), (pa.int64(), pa.int32(), True), (pa.int16(), pa.int32(), False),
    (pa.int64(), pa.uint32(), True), (pa.int64(), pa.uint64(), False), (pa.uint64(), pa.uint32(), True),
    (pa.float64(), pa.float32(), True), (pa.float32(), pa.float64(), False),
    (pa.decimal128(14, 2), pa.decimal128(12, 2), True), (pa.decimal128(12, 4), pa.decimal128(12, 2), False),
    (pa.decimal128(20, 0), pa.uint64(), True), (pa.decimal128(19, 0), pa.uint64(), False),
    (pa.large_string(), pa.string(), True), (pa.string(), pa.decimal128(12, 2), False),
    (pa.large_list(pa.field("element", pa.int64())), pa.list_(pa.int32()), True),
    (pa.timestamp("us", tz="+00:00"), pa.timestamp("us", tz="UTC"), True),
    (pa.timestamp("us"), pa.timestamp("us", tz="UTC"), False),
])
def test_a_target_column_holds_its_type_or_an_exact_widening(actual, expected, held):
    assert holds(actual, expected) is held


def test_postgres_target_types_are_the_sources_own():
    assert postgres_ddl_type(postgres_field("a", "inet")) == "inet"
    assert postgres_ddl_type(postgres_field("a", "character varying(64)")) == "character varying(64)"
    assert postgres_ddl_type(postgres_field("a", "character(5)")) == "character(5)"
    assert postgres_ddl_type(postgres_field("a", "bit(3)")) == "bit(3)"
    assert postgres_ddl_type(postgres_field("a", "jsonb")) == "jsonb"
    assert postgres_ddl_type(postgres_field("a", "int4range", "r")) == "int4range"
    assert postgres_ddl_type(postgres_field("a", "interval")) == "interval"
    assert postgres_ddl_type(postgres_field("a", "uuid[]")) == "uuid[]"
    assert postgres_ddl_type(postgres_field("a", "mood", "e", builtin=False)) == "text"  # no such type there
    assert postgres_ddl_type(mariadb_field("a", "inet6")) == "inet"
    # MariaDB drops a CHAR's trailing spaces when it is read: varchar(n) holds that, char(n) would pad it.
    assert postgres_ddl_type(mariadb_field("a", "char(10)")) == "character varying(10)"
    assert postgres_ddl_type(mariadb_field("a", "longtext", is_json=True)) == "json"  # its text verbatim
    assert postgres_ddl_type(mariadb_field("a", "bigint unsigned")) == "numeric(20,0)"
    assert postgres_ddl_type(mariadb_field("a", "tinyint")) == "smallint"


def test_postgres_target_writes_natively_what_copy_can_and_casts_the_rest():
    assert postgres_storage_type("smallint", pa.int8()) == pa.int16()
    assert postgres_storage_type("uuid", pa.uuid()) == pa.uuid()
    assert postgres_storage_type("integer[]", pa.list_(pa.int32())) == pa.list_(pa.int32())
    assert postgres_storage_type("numeric(20,0)", pa.uint64()) == pa.decimal128(38, 0)
    for spelled in ("inet", "jsonb", "time with time zone", "int4range", "bit(3)", "inet[]", "mood"):
        assert postgres_storage_type(spelled, pa.string()) is None


def test_elasticsearch_maps_long_text_as_text_with_a_bounded_keyword():
    long_text = elasticsearch_mapping(pa.field("body", pa.string()))
    assert long_text["type"] == "text"
    keyword = long_text["fields"]["keyword"]
    assert keyword["type"] == "keyword"
    # ignore_above counts characters; UTF-8 takes up to 4 bytes each: never past Lucene's 32766-byte term.
    assert keyword["ignore_above"] == ES_IGNORE_ABOVE and keyword["ignore_above"] * 4 <= 32766
    assert elasticsearch_mapping(postgres_field("s", "character varying(64)")) == {"type": "keyword"}
    assert elasticsearch_mapping(postgres_field("s", "character varying(5000)"))["type"] == "text"
    assert elasticsearch_mapping(postgres_field("s", "mood", "e", builtin=False)) == {"type": "keyword"}
    assert elasticsearch_mapping(postgres_field("s", "uuid")) == {"type": "keyword"}
    assert elasticsearch_mapping(postgres_field("s", "inet")) == {"type": "keyword"}  # may carry a netmask
    assert elasticsearch_mapping(postgres_field("s", "cidr")) == {"type": "ip_range"}
    assert elasticsearch_mapping(mariadb_field("s", "inet4")) == {"type": "ip"}
    assert elasticsearch_mapping(postgres_field("s", "integer[]")) == {"type": "integer"}
    assert elasticsearch_mapping(postgres_field("s", "jsonb"))["type"] == "text"
    assert elasticsearch_mapping(mariadb_field("s", "bigint unsigned")) == {"type": "keyword"}


def test_json_holds_numbers_natively_and_the_rest_as_text():
    assert json_storage_type(pa.int16()) == pa.int16()
    assert json_storage_type(pa.uuid()) == pa.string()
    assert json_storage_type(pa.list_(pa.decimal128(5, 2))) == pa.list_(pa.string())


def test_bulk_errors_surface_elasticsearch_s_words():
    from elasticsearch import helpers

    refused = helpers.BulkIndexError("2 document(s) failed to index.", [
        {"index": {"_index": "t", "_id": "7", "status": 400, "error": {
            "type": "document_parsing_exception", "reason": "failed to parse field [body] of type [keyword]"}}},
        {"index": {"_index": "t", "_id": "8", "status": 429, "error": {"type": "es_rejected_execution_exception",
                                                                       "reason": "rejected"}}}])
    error = _write_error("t", refused)
    assert isinstance(error, TargetWriteError) and error.refused == 2
    assert error.failures[0] == ("7", "document_parsing_exception", "failed to parse field [body] of type [keyword]")
    assert "id '7': document_parsing_exception: failed to parse field [body]" in str(error)


def test_all_unmappable_columns_are_one_error():
    error = TypeMappingError.of("public.t", ["column 'a': one", "column 'b': two"])
    assert error.problems == ["column 'a': one", "column 'b': two"]
    assert str(error).splitlines() == ["table public.t: 2 columns cannot be copied exactly (nothing was written):",
                                       "  column 'a': one", "  column 'b': two"]


# ----------------------------------------------------------------------------------- overrides

def test_the_request_takes_casts_and_exclusions():
    request = BackfillRequest(table="public.t", casts={"b": "text", "a": "numeric(38,20)"}, exclude=["z", "y", "z"])
    assert request.casts == {"a": "numeric(38,20)", "b": "text"} and request.exclude == ["y", "z"]


@pytest.mark.parametrize(("fields", "message"), [
    ({"casts": {"a": "numeric(10"}}, r"casts\n.*a='numeric\(10': 'numeric\(10' is not an SQL type"),
    ({"casts": {"a": "text"}, "exclude": ["a"]}, "a cannot be both cast and excluded"),
    ({"key": "id", "exclude": ["id"]}, "exclude: 'id' is the key ranges are cut on"),
    ({"key": "id", "casts": {"id": "text"}}, "casts: 'id' is the key ranges are cut on"),
    ({"mode": "incremental", "cursor_column": "u", "exclude": ["u"]}, "exclude: 'u' is the cursor column"),
    ({"exclude": [" "]}, r"exclude\n.*an excluded column needs a name"),
])
def test_bad_overrides_are_one_clear_error_naming_the_field(fields, message):
    with pytest.raises(ValidationError, match=message):
        BackfillRequest(table="public.t", **fields)


def test_the_job_changes_with_casts_and_exclusions_and_stays_without_them():
    plain = BackfillRequest(table="public.t")
    cast = BackfillRequest(table="public.t", casts={"a": "text"})
    excluded = BackfillRequest(table="public.t", exclude=["a"])
    assert len({job_id("s", "t", plain), job_id("s", "t", cast), job_id("s", "t", excluded)}) == 3


def test_casts_as_the_cli_operators_and_form_spell_them():
    assert parse_casts(["a=numeric(38,20)", "b = text"]) == {"a": "numeric(38,20)", "b": "text"}
    assert parse_casts("a=varchar(5)") == {"a": "varchar(5)"}
    assert parse_casts({"a": "text"}) == {"a": "text"}
    assert parse_casts(None) == {} and parse_casts([]) == {}
    with pytest.raises(PlanError, match=r"cast 'amount' is not column=type"):
        parse_casts(["amount"])


def test_the_cli_takes_repeated_casts_and_exclusions():
    from airflow_mesh.backfill.__main__ import parser

    parse_args = parser().parse_args
    args = parse_args(["--source", "postgresql://u@h/db", "--table", "t", "--target", "es://h", "--target-name", "x",
                       "--cast", "a=numeric(38,20)", "--cast", "b=text", "--exclude", "c", "--exclude", "d"])
    assert parse_casts(args.cast) == {"a": "numeric(38,20)", "b": "text"} and args.exclude == ["c", "d"]
    plain = parse_args(["--source", "s", "--table", "t", "--target", "x", "--target-name", "y"])
    assert plain.cast == [] and plain.exclude == []


def test_the_cli_refuses_a_bad_cast_in_one_line(capsys):
    from airflow_mesh.backfill.__main__ import main

    code = main(["--source", "postgresql://u:p@127.0.0.1:1/db", "--table", "t", "--target", "es://127.0.0.1:1",
                 "--target-name", "x", "--cast", "amount"])
    assert code == 1
    assert "cast 'amount' is not column=type" in capsys.readouterr().err


def test_operators_take_cast_and_exclude():
    from airflow_mesh.operators.backfill import BackfillOperator

    operator = BackfillOperator(task_id="t", source_conn_id="s", table="public.t", target_conn_id="x", target_name="y",
                                cast=["a=numeric(38,20)"], exclude=["b"])
    assert {"cast", "exclude"} <= set(operator.template_fields)
    request = operator.request()
    assert request.casts == {"a": "numeric(38,20)"} and request.exclude == ["b"]
    as_dict = BackfillOperator(task_id="u", source_conn_id="s", table="public.t", target_conn_id="x", target_name="y",
                               cast={"a": "text"}, exclude=None).request()
    assert as_dict.casts == {"a": "text"} and as_dict.exclude == []
    empty = BackfillOperator(task_id="v", source_conn_id="s", table="public.t", target_conn_id="x", target_name="y",
                             cast="", exclude="").request()
    assert empty.casts == {} and empty.exclude == []


def test_the_form_has_nullable_cast_and_exclude_passed_to_every_task():
    spec = importlib.util.spec_from_file_location("backfill_ui", ROOT / "dags" / "backfill_ui.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = module.backfill_ui_dag.params
    for name in ("cast", "exclude"):
        param = params.get_param(name)
        assert param.value is None and "null" in param.schema["type"] and "array" in param.schema["type"]
        assert param.schema["items"]["type"] == "string" and param.schema["section"] == "Source"
        assert module.REQUEST[name] == f"{{{{ params.{name} }}}}"
    for task in module.backfill_ui_dag.tasks:
        assert {"cast", "exclude"} <= set(task.template_fields)
    assert re.match(params.get_param("cast").schema["items"]["pattern"], "amount=numeric(38,20)")
