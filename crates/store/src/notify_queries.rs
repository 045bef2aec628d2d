//! The SQL of [`crate::NotifyStore`] — duty roster, inbox, outbound channels — shared by both backends
//! the way [`queries`](super::queries) is: this file is compiled once per backend with that backend's
//! `Db` and `This`.

use jiff::Timestamp;
use jiff::civil::Date;

use super::This;
use crate::rows::ts;
use crate::shared::{map_db_error, parse};
use crate::{NewNotification, Notification, NotifyChannel, NotifyStore, Page, PageRequest, Result, micros};
use civicgrid_core::duty::DutyEntry;

const NOTIFICATION_COLUMNS: &str = "id, user_id, kind, severity, case_id, title, body, created_at, read_at, acked_at";
type NotificationRow = (i64, i64, String, String, Option<i64>, String, String, i64, Option<i64>, Option<i64>);

fn notification_from_row(r: NotificationRow) -> Result<Notification> {
    let (id, user_id, kind, severity, case_id, title, body, created_at, read_at, acked_at) = r;
    Ok(Notification {
        id,
        user_id,
        kind,
        severity: parse(&severity)?,
        case_id,
        title,
        body,
        created_at: ts(created_at)?,
        read_at: read_at.map(ts).transpose()?,
        acked_at: acked_at.map(ts).transpose()?,
    })
}

const CHANNEL_COLUMNS: &str = "id, name, kind, url, secret, min_severity, created_at, disabled_at";
type ChannelRow = (i64, String, String, String, String, String, i64, Option<i64>);

fn channel_from_row((id, name, kind, url, secret, min, created_at, disabled_at): ChannelRow) -> Result<NotifyChannel> {
    Ok(NotifyChannel {
        id,
        name,
        kind: parse(&kind)?,
        url,
        secret,
        min_severity: parse(&min)?,
        created_at: ts(created_at)?,
        disabled_at: disabled_at.map(ts).transpose()?,
    })
}

type RosterRow = (String, String, String, String, i64);

#[async_trait::async_trait]
impl NotifyStore for This {
    async fn replace_roster(&self, from: Date, to: Date, entries: &[DutyEntry]) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM duty_roster WHERE day >= $1 AND day <= $2")
            .bind(from.to_string())
            .bind(to.to_string())
            .execute(&mut *tx)
            .await?;
        for e in entries {
            sqlx::query(
                "INSERT INTO duty_roster (day, shift, post, department, user_id) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(e.date.to_string())
            .bind(e.shift.as_str())
            .bind(e.post.as_str())
            .bind(e.department.as_ref().map(|d| d.as_str().to_owned()).unwrap_or_default())
            .bind(e.user_id)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_db_error(e, "roster entry"))?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn roster(&self, from: Date, to: Date) -> Result<Vec<DutyEntry>> {
        let rows: Vec<RosterRow> = sqlx::query_as(
            "SELECT day, shift, post, department, user_id FROM duty_roster WHERE day >= $1 AND day <= $2 \
             ORDER BY day, shift, post, department, user_id",
        )
        .bind(from.to_string())
        .bind(to.to_string())
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(day, shift, post, dept, user_id)| {
                Ok(DutyEntry {
                    date: parse(&day)?,
                    shift: parse(&shift)?,
                    post: parse(&post)?,
                    department: if dept.is_empty() { None } else { Some(parse(&dept)?) },
                    user_id,
                })
            })
            .collect()
    }

    async fn notify(&self, n: &NewNotification, user_ids: &[i64]) -> Result<Vec<Notification>> {
        let mut tx = self.write_tx().await?;
        let mut made = Vec::new();
        let sql = format!(
            "INSERT INTO notifications (user_id, dedup_key, kind, severity, case_id, title, body, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (user_id, dedup_key) DO NOTHING \
             RETURNING {NOTIFICATION_COLUMNS}"
        );
        for &user in user_ids {
            let row: Option<NotificationRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(user)
                .bind(&n.dedup_key)
                .bind(&n.kind)
                .bind(n.severity.as_str())
                .bind(n.case_id)
                .bind(&n.title)
                .bind(&n.body)
                .bind(micros(n.created_at))
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(r) = row {
                made.push(notification_from_row(r)?);
            }
        }
        tx.commit().await?;
        Ok(made)
    }

    async fn notifications(&self, user_id: i64, unread_only: bool, page: PageRequest) -> Result<Page<Notification>> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE user_id = $1 AND id < $2 \
             AND ($3 = 0 OR read_at IS NULL) ORDER BY id DESC LIMIT $4"
        ));
        let rows: Vec<NotificationRow> = sqlx::query_as(sql)
            .bind(user_id)
            .bind(page.before.unwrap_or(i64::MAX))
            .bind(i64::from(unread_only))
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.read)
            .await?;
        crate::shared::keyset_page(rows, page.limit as usize, notification_from_row, |n| n.id)
    }

    async fn notification(&self, id: i64) -> Result<Option<Notification>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE id = $1"));
        let row: Option<NotificationRow> = sqlx::query_as(sql).bind(id).fetch_optional(&self.read).await?;
        row.map(notification_from_row).transpose()
    }

    async fn unread_count(&self, user_id: i64) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN read_at IS NULL THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN acked_at IS NULL AND severity = 'critical' THEN 1 ELSE 0 END), 0) \
             FROM notifications WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_one(&self.read)
        .await?)
    }

    async fn mark_notification(&self, id: i64, user_id: i64, now: Timestamp, ack: bool) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE notifications SET read_at = COALESCE(read_at, $1), \
             acked_at = CASE WHEN $2 = 1 THEN COALESCE(acked_at, $1) ELSE acked_at END \
             WHERE id = $3 AND user_id = $4",
        )
        .bind(micros(now))
        .bind(i64::from(ack))
        .bind(id)
        .bind(user_id)
        .execute(&mut *self.write_conn().await?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_channel(&self, c: &NotifyChannel) -> Result<NotifyChannel> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO notify_channels (name, kind, url, secret, min_severity, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&c.name)
        .bind(c.kind.as_str())
        .bind(&c.url)
        .bind(&c.secret)
        .bind(c.min_severity.as_str())
        .bind(micros(c.created_at))
        .fetch_one(&mut *self.write_conn().await?)
        .await
        .map_err(|e| map_db_error(e, "name"))?;
        Ok(NotifyChannel { id, disabled_at: None, ..c.clone() })
    }

    async fn channels(&self) -> Result<Vec<NotifyChannel>> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {CHANNEL_COLUMNS} FROM notify_channels ORDER BY id"));
        let rows: Vec<ChannelRow> = sqlx::query_as(sql).fetch_all(&self.read).await?;
        rows.into_iter().map(channel_from_row).collect()
    }

    async fn set_channel_disabled(&self, id: i64, at: Option<Timestamp>) -> Result<bool> {
        let done = sqlx::query("UPDATE notify_channels SET disabled_at = $1 WHERE id = $2")
            .bind(at.map(micros))
            .bind(id)
            .execute(&mut *self.write_conn().await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
