//! Runs a SQL exercise's reference query on its own data, in a private in-memory SQLite database,
//! to compute the result the student's query must match.

use std::str::FromStr;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteRow};
use sqlx::{Column, ConnectOptions, Connection, Row, TypeInfo, ValueRef};

use crate::domain::catalogue::ResultTable;

/// Creates the schema, loads the data and returns the query's result table.
pub async fn evaluate(schema: &str, data: &str, query: &str) -> anyhow::Result<ResultTable> {
    let mut conn = SqliteConnectOptions::from_str("sqlite::memory:")?
        .connect()
        .await
        .context("opening an in-memory SQLite database")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(schema.to_owned()))
        .execute(&mut conn)
        .await
        .context("running `schema`")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(data.to_owned()))
        .execute(&mut conn)
        .await
        .context("running `data`")?;
    let rows: Vec<SqliteRow> = sqlx::query(sqlx::AssertSqlSafe(query.to_owned()))
        .fetch_all(&mut conn)
        .await
        .context("running the reference query (`solution`)")?;
    let mut columns = Vec::new();
    if let Some(first) = rows.first() {
        columns = first
            .columns()
            .iter()
            .map(|c| c.name().to_owned())
            .collect();
    }
    let mut table = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut values = Vec::with_capacity(row.len());
        for i in 0..row.len() {
            values.push(cell(row, i)?);
        }
        table.push(values);
    }
    conn.close().await.ok();
    Ok(ResultTable {
        columns,
        rows: table,
    })
}

/// One cell as JSON, by its runtime SQLite type (columns of expressions have no declared type).
fn cell(row: &SqliteRow, i: usize) -> anyhow::Result<serde_json::Value> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(serde_json::Value::Null);
    }
    let type_name = raw.type_info().name().to_ascii_uppercase();
    Ok(match type_name.as_str() {
        "INTEGER" | "BOOLEAN" => serde_json::Value::from(row.try_get::<i64, _>(i)?),
        "REAL" => serde_json::Value::from(row.try_get::<f64, _>(i)?),
        "BLOB" => {
            serde_json::Value::from(format!("<{} octets>", row.try_get::<Vec<u8>, _>(i)?.len()))
        }
        _ => serde_json::Value::from(row.try_get::<String, _>(i)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn computes_a_result_table() {
        let t = evaluate(
            "CREATE TABLE t (nom TEXT, age INTEGER, taille REAL);",
            "INSERT INTO t VALUES ('Léa', 16, 1.65), ('Noé', 17, NULL);",
            "SELECT nom, age, taille, age * 2 AS double FROM t ORDER BY nom",
        )
        .await
        .unwrap();
        assert_eq!(t.columns, vec!["nom", "age", "taille", "double"]);
        assert_eq!(
            t.rows,
            vec![
                vec!["Léa".into(), 16.into(), 1.65.into(), 32.into()],
                vec!["Noé".into(), 17.into(), serde_json::Value::Null, 34.into()],
            ]
        );
    }

    #[tokio::test]
    async fn a_broken_query_is_an_error() {
        let err = evaluate("CREATE TABLE t (x);", "", "SELECT y FROM t")
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("solution"), "{err:#}");
    }
}
