//! Oktopus (TR-369/USP controller) REST: the port ([`Usp`]), the real client ([`OktopusClient`]).
//!
//! `PUT /api/auth/login` with `{"email","password"}` answers a JSON string holding a JWT (24 h);
//! later calls send it as `Authorization: <jwt>`, the raw token without `Bearer`. A `401` (the
//! token expired) logs in again once. Devices: `GET /api/device?id=<sn>` and
//! `GET /api/device?page_number=&page_size=` (`{"devices": […], "total": N}`, `404 "No devices
//! found"` for none), with Go field names. A USP Get is `PUT /api/device/{sn}/any/get` with
//! `{"param_paths": […], "max_depth": N}`; a box that is not online answers `503 "Device is
//! offline"`, said as such ([`UspError::Offline`]).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::settings::Secret;

/// A box as Oktopus lists it (its Go field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UspDevice {
    #[serde(rename = "SN")]
    pub sn: String,
    #[serde(rename = "Model", default)]
    pub model: String,
    #[serde(rename = "Vendor", default)]
    pub vendor: String,
    #[serde(rename = "Version", default)]
    pub version: String,
    #[serde(rename = "ProductClass", default)]
    pub product_class: String,
    #[serde(rename = "Alias", default)]
    pub alias: String,
    /// 0 offline, 1 associating, 2 online.
    #[serde(rename = "Status", default)]
    pub status: u8,
}

impl UspDevice {
    pub fn state(&self) -> &'static str {
        match self.status {
            2 => "online",
            1 => "associating",
            _ => "offline",
        }
    }
}

/// Why Oktopus gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UspError {
    #[error("Oktopus cannot be reached: {0}")]
    Unreachable(String),
    #[error("Oktopus refused our credentials: {0}")]
    Credentials(String),
    /// `503`: the box is not connected to the controller now.
    #[error("the box is offline (Oktopus: {0})")]
    Offline(String),
    #[error("Oktopus refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("Oktopus sent an answer we cannot read: {0}")]
    BadAnswer(String),
}

/// Parameter values a USP Get brought back, by full path.
pub type Params = BTreeMap<String, Value>;

/// Reads the Go-encoded GetResp: every `resolved_path + key → value`; a path the agent refused
/// (non-zero `err_code`) is skipped, its code kept in `errors`.
pub fn parse_get(body: &Value) -> Result<(Params, Vec<(String, i64)>), UspError> {
    let results = body
        .get("req_path_results")
        .and_then(Value::as_array)
        .ok_or_else(|| UspError::BadAnswer("no req_path_results".into()))?;
    let mut params = Params::new();
    let mut errors = Vec::new();
    for r in results {
        let path = r
            .get("requested_path")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let code = r.get("err_code").and_then(Value::as_i64).unwrap_or(0);
        if code != 0 {
            errors.push((path.to_owned(), code));
            continue;
        }
        for resolved in r
            .get("resolved_path_results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let base = resolved
                .get("resolved_path")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(Value::Object(m)) = resolved.get("result_params") {
                for (k, v) in m {
                    params.insert(format!("{base}{k}"), v.clone());
                }
            }
        }
    }
    Ok((params, errors))
}

/// The USP controller.
pub trait Usp: Send + Sync {
    /// One box by its serial (endpoint id); `None` when Oktopus has none.
    fn device<'a>(&'a self, sn: &'a str) -> BoxFuture<'a, Result<Option<UspDevice>, UspError>>;
    /// A page of boxes and how many there are.
    fn devices(
        &self,
        page: u32,
        size: u32,
    ) -> BoxFuture<'_, Result<(Vec<UspDevice>, u64), UspError>>;
    /// A USP Get over whichever transport the box is on.
    fn get<'a>(
        &'a self,
        sn: &'a str,
        paths: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Params, UspError>>;
}

/// Oktopus's REST API.
pub struct OktopusClient {
    http: reqwest::Client,
    base: String,
    email: String,
    password: Secret,
    token: Mutex<Option<String>>,
}

impl std::fmt::Debug for OktopusClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OktopusClient")
            .field("base", &self.base)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

fn text_of(body: &str) -> String {
    // Oktopus's errors are JSON strings.
    serde_json::from_str::<String>(body).unwrap_or_else(|_| body.trim().chars().take(300).collect())
}

impl OktopusClient {
    pub fn new(
        base: &str,
        email: &str,
        password: Secret,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: super::peer_client(timeout)?,
            base: base.trim_end_matches('/').to_owned(),
            email: email.to_owned(),
            password,
            token: Mutex::new(None),
        })
    }

    fn cached(&self) -> Option<String> {
        self.token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sends a request: its status and text, or why nothing came back.
    async fn exchange(req: reqwest::RequestBuilder) -> Result<(u16, String), UspError> {
        let resp = req
            .send()
            .await
            .map_err(|e| UspError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .text()
            .await
            .map_err(|e| UspError::Unreachable(e.to_string()))?;
        Ok((status, body))
    }

    async fn login(&self) -> Result<String, UspError> {
        let (status, body) =
            Self::exchange(self.http.put(format!("{}/api/auth/login", self.base)).json(
                &serde_json::json!({"email": self.email, "password": self.password.expose()}),
            ))
            .await?;
        match status {
            200 => {
                let token: String = serde_json::from_str(&body)
                    .map_err(|e| UspError::BadAnswer(format!("login: {e}")))?;
                *self
                    .token
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(token.clone());
                Ok(token)
            }
            401 => Err(UspError::Credentials(text_of(&body))),
            _ => Err(UspError::Refused {
                status,
                message: text_of(&body),
            }),
        }
    }

    /// Sends a request with the token, logging in first or again (once) when needed.
    async fn call(
        &self,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<(u16, String), UspError> {
        let mut fresh = false;
        let mut token = match self.cached() {
            Some(t) => t,
            None => {
                fresh = true;
                self.login().await?
            }
        };
        loop {
            let (status, body) = Self::exchange(
                make(&self.http).header(reqwest::header::AUTHORIZATION, token.as_str()),
            )
            .await?;
            if status == 401 && !fresh {
                fresh = true;
                token = self.login().await?;
                continue;
            }
            return Ok((status, body));
        }
    }
}

impl Usp for OktopusClient {
    fn device<'a>(&'a self, sn: &'a str) -> BoxFuture<'a, Result<Option<UspDevice>, UspError>> {
        Box::pin(async move {
            let url = format!("{}/api/device", self.base);
            let (status, body) = self.call(|h| h.get(&url).query(&[("id", sn)])).await?;
            match status {
                200 => serde_json::from_str(&body)
                    .map(Some)
                    .map_err(|e| UspError::BadAnswer(e.to_string())),
                404 => Ok(None),
                _ => Err(UspError::Refused {
                    status,
                    message: text_of(&body),
                }),
            }
        })
    }

    fn devices(
        &self,
        page: u32,
        size: u32,
    ) -> BoxFuture<'_, Result<(Vec<UspDevice>, u64), UspError>> {
        Box::pin(async move {
            #[derive(Deserialize)]
            struct Page {
                devices: Vec<UspDevice>,
                total: u64,
            }
            let url = format!("{}/api/device", self.base);
            let q = [
                ("page_number", page.to_string()),
                ("page_size", size.clamp(1, 50).to_string()),
            ];
            let (status, body) = self.call(|h| h.get(&url).query(&q)).await?;
            match status {
                200 => serde_json::from_str::<Page>(&body)
                    .map(|p| (p.devices, p.total))
                    .map_err(|e| UspError::BadAnswer(e.to_string())),
                404 => Ok((Vec::new(), 0)),
                _ => Err(UspError::Refused {
                    status,
                    message: text_of(&body),
                }),
            }
        })
    }

    fn get<'a>(
        &'a self,
        sn: &'a str,
        paths: &'a [&'a str],
    ) -> BoxFuture<'a, Result<Params, UspError>> {
        Box::pin(async move {
            let url = format!(
                "{}/api/device/{}/any/get",
                self.base,
                crate::hub::acs::path_segment(sn)
            );
            let body = serde_json::json!({"param_paths": paths, "max_depth": 2});
            let (status, text) = self.call(|h| h.put(&url).json(&body)).await?;
            match status {
                200 => {
                    let v: Value = serde_json::from_str(&text)
                        .map_err(|e| UspError::BadAnswer(e.to_string()))?;
                    Ok(parse_get(&v)?.0)
                }
                503 => Err(UspError::Offline(text_of(&text))),
                _ => Err(UspError::Refused {
                    status,
                    message: text_of(&text),
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_responses_read_as_oktopus_encodes_them() {
        let body = serde_json::json!({"req_path_results": [
            {"requested_path": "Device.DeviceInfo.", "err_code": 0, "resolved_path_results": [
                {"resolved_path": "Device.DeviceInfo.", "result_params": {
                    "Manufacturer": "OB-USP-AGENT", "SoftwareVersion": "9.0.0"}}]},
            {"requested_path": "Device.Nope.", "err_code": 7026, "resolved_path_results": []}
        ]});
        let (params, errors) = parse_get(&body).unwrap();
        assert_eq!(params["Device.DeviceInfo.Manufacturer"], "OB-USP-AGENT");
        assert_eq!(params["Device.DeviceInfo.SoftwareVersion"], "9.0.0");
        assert_eq!(errors, [("Device.Nope.".to_owned(), 7026)]);
        assert!(parse_get(&serde_json::json!({})).is_err());
    }
}
