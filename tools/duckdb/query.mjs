// Runs one SQL query with DuckDB and prints the result as JSON: the column names and
// DuckDB's type of each, then the rows. Used by the export tests to read Parquet files
// with a reader that shares no code with the server.
//
//   node tools/duckdb/query.mjs "SELECT * FROM read_parquet('x.parquet')"
import { DuckDBInstance } from '@duckdb/node-api';

const sql = process.argv[2];
const instance = await DuckDBInstance.create(':memory:');
const conn = await instance.connect();
const reader = await conn.runAndReadAll(sql);
const columns = reader.columnNames();
const types = reader.columnTypes().map((t) => t.toString());
console.log(JSON.stringify({ columns, types, rows: reader.getRowsJson() }));
