//! Webhook signature checks, pure: bytes and settings in, a verdict out. Nothing here logs or
//! returns anything derived from a secret.
//!
//! * Twilio (`X-Twilio-Signature`): base64 of HMAC-SHA1, keyed with the auth token, over the URL
//!   Twilio was configured with (query string included) followed by every form parameter as
//!   `name` + `value`, sorted by name then value. A JSON body is signed through the URL instead:
//!   its `bodySHA256` query parameter holds the body's SHA-256 in hex. Twilio's own validators
//!   accept the URL with its port removed or the scheme's standard port added; so does this.
//! * Stripe (`Stripe-Signature: t=…,v1=…[,v1=…]`): hex of HMAC-SHA256, keyed with the endpoint
//!   secret as written (`whsec_` included), over `t` + `.` + the raw body. Any `v1` may match
//!   (several during a secret rotation); other schemes are ignored. The timestamp must be within
//!   the tolerance of now, both ways (a replay of an old event, or a forged future one).

use hmac::Mac as _;

/// Why a webhook was refused. The wording names what was wrong with the request, never the
/// expected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request carries no signature")]
    Missing,
    #[error("the signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error("the signature does not match the request")]
    Mismatch,
    #[error("the signature's timestamp is outside the {tolerance_s} s tolerance")]
    Stale { tolerance_s: i64 },
}

/// Stripe's default tolerance, applied both ways.
pub const STRIPE_TOLERANCE_S: i64 = 300;

/// Checks `X-Twilio-Signature` for a form-encoded POST. `url` is the full URL Twilio was given
/// (the server's public URL, the path and the query string as received); `params` the decoded
/// form parameters, repeated names included.
pub fn twilio_form(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    let expected = decode_base64(signature)?;
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let matches = |candidate: &str| {
        let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()) else {
            return false;
        };
        mac.update(candidate.as_bytes());
        for (name, value) in &sorted {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
        mac.verify_slice(&expected).is_ok()
    };
    if url_variants(url).iter().any(|u| matches(u)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Checks `X-Twilio-Signature` for a JSON body: the URL's `bodySHA256` parameter must be the
/// body's hash, and the URL alone is signed.
pub fn twilio_json(
    auth_token: &str,
    url: &str,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), SignatureError> {
    use sha2::Digest as _;
    let expected = decode_base64(signature)?;
    let claimed = query_param(url, "bodySHA256").ok_or(SignatureError::Mismatch)?;
    let actual = hex::encode(sha2::Sha256::digest(body));
    // Not secret (anyone can hash the body); compared plainly.
    if !claimed.eq_ignore_ascii_case(&actual) {
        return Err(SignatureError::Mismatch);
    }
    let matches = |candidate: &str| {
        let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()) else {
            return false;
        };
        mac.update(candidate.as_bytes());
        mac.verify_slice(&expected).is_ok()
    };
    if url_variants(url).iter().any(|u| matches(u)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn decode_base64(signature: Option<&str>) -> Result<Vec<u8>, SignatureError> {
    use base64::Engine as _;
    let signature = signature
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(SignatureError::Missing)?;
    base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| SignatureError::Malformed("not base64"))
}

/// The URL without its port, and with the scheme's standard port (when it names none).
fn url_variants(url: &str) -> [String; 2] {
    let Some((scheme, rest)) = url.split_once("://") else {
        return [url.to_owned(), url.to_owned()];
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    // A port follows the last colon after the host (an IPv6 host is in brackets).
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_part = &authority[host_start..];
    let port_colon = match host_part.rfind(']') {
        Some(end) => host_part[end..].find(':').map(|i| end + i),
        None => host_part.rfind(':'),
    };
    let (without, has_port) = match port_colon {
        Some(i) => (
            format!("{scheme}://{}{tail}", &authority[..host_start + i]),
            true,
        ),
        None => (url.to_owned(), false),
    };
    let with = if has_port {
        url.to_owned()
    } else {
        let port = if scheme.eq_ignore_ascii_case("https") {
            443
        } else {
            80
        };
        format!("{scheme}://{authority}:{port}{tail}")
    };
    [without, with]
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A verified Stripe header's timestamp.
pub fn stripe(
    secret: &str,
    header: Option<&str>,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<i64, SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let mut t = None;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        let Some((k, v)) = item.trim().split_once('=') else {
            return Err(SignatureError::Malformed(
                "unable to extract timestamp and signatures",
            ));
        };
        match k {
            "t" => {
                t = Some(
                    v.parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("the timestamp is not a number"))?,
                );
            }
            // A v1 that is not hex cannot match; the others still may.
            "v1" => v1.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed("no timestamp"))?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed("no v1 signature"));
    }
    let matches = v1.iter().any(|sig| {
        let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(sig).is_ok()
    });
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    // Checked after the signature, so a forged header learns nothing about the clock either.
    if (now_s - t).abs() > tolerance_s {
        return Err(SignatureError::Stale { tolerance_s });
    }
    Ok(t)
}

/// A `Stripe-Signature` header for `body` at `t` (for the test double and the benchmark's
/// senders, which sign as Stripe does).
pub fn stripe_header(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// An `X-Twilio-Signature` for a form POST (for the test double and the benchmark's senders).
pub fn twilio_signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    use base64::Engine as _;
    let mut sorted: Vec<&(String, String)> = params.iter().collect();
    sorted.sort();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn fixture(path: &str) -> Value {
        let file = format!("{}/../tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap()
    }

    fn pairs(v: &Value) -> Vec<(String, String)> {
        match v {
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect(),
            Value::Array(a) => a
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap().to_owned(),
                        p[1].as_str().unwrap().to_owned(),
                    )
                })
                .collect(),
            _ => panic!("not parameters: {v}"),
        }
    }

    #[test]
    fn twilio_official_vectors() {
        let v = fixture("twilio/request_validator_vectors.json");
        let token = v["auth_token"].as_str().unwrap();
        let url = v["url"].as_str().unwrap();
        let params = pairs(&v["params"]);
        let sig = v["expected_signature"].as_str().unwrap();
        assert_eq!(twilio_signature(token, url, &params), sig);
        assert_eq!(twilio_form(token, url, &params, Some(sig)), Ok(()));
        // Any other port in the URL Twilio saw: its signature is of the URL without it.
        let p = &v["port_variants"];
        let with_port = &p["https_with_port_1234_same_sig"];
        assert_eq!(
            twilio_form(
                token,
                with_port["url"].as_str().unwrap(),
                &params,
                with_port["valid_signature"].as_str()
            ),
            Ok(())
        );
        // Signed with the standard port added, checked against the URL without it.
        assert_eq!(
            twilio_form(token, url, &params, p["sig_of_https_url_with_443"].as_str()),
            Ok(())
        );
        let http = url.replace("https://", "http://");
        assert_eq!(
            twilio_form(token, &http, &params, p["sig_of_http_url_with_80"].as_str()),
            Ok(())
        );
        // A port that is not the scheme's standard one is not guessed.
        assert_eq!(
            twilio_form(token, url, &params, p["sig_of_http_url_with_1234"].as_str()),
            Err(SignatureError::Mismatch)
        );
        let d = &v["duplicate_params"];
        assert_eq!(
            twilio_form(
                token,
                url,
                &pairs(&d["params_multi"]),
                d["expected_signature"].as_str()
            ),
            Ok(())
        );
        let j = &v["json_body"];
        let body = j["body"].as_str().unwrap().as_bytes();
        let json_url = j["url"].as_str().unwrap();
        assert_eq!(
            twilio_json(token, json_url, body, j["expected_signature"].as_str()),
            Ok(())
        );
        assert_eq!(
            twilio_json(
                token,
                json_url,
                b"{\"property\": \"other\"}",
                j["expected_signature"].as_str()
            ),
            Err(SignatureError::Mismatch),
            "a body that is not the hashed one"
        );
    }

    #[test]
    fn twilio_refuses_forged_tampered_and_unsigned_requests() {
        let v = fixture("twilio/inbound_sms_webhook.synthetic.json");
        let token = v["auth_token"].as_str().unwrap();
        let url = v["url"].as_str().unwrap();
        let params = pairs(&v["form"]);
        let sig = v["x_twilio_signature"].as_str().unwrap();
        assert_eq!(twilio_form(token, url, &params, Some(sig)), Ok(()));
        let mut tampered = params.clone();
        for p in &mut tampered {
            if p.0 == "Body" {
                p.1.push('!');
            }
        }
        assert_eq!(
            twilio_form(token, url, &tampered, Some(sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            twilio_form("another-token", url, &params, Some(sig)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            twilio_form(token, &format!("{url}?x=1"), &params, Some(sig)),
            Err(SignatureError::Mismatch),
            "the query string is signed"
        );
        assert_eq!(
            twilio_form(token, url, &params, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            twilio_form(token, url, &params, Some("%%%")),
            Err(SignatureError::Malformed("not base64"))
        );
    }

    #[test]
    fn stripe_official_vector_and_tolerance() {
        let v = fixture("stripe/webhook_signature_vector.json");
        let secret = v["secret"].as_str().unwrap();
        let t = v["timestamp"].as_i64().unwrap();
        let body = v["payload_exact_bytes"].as_str().unwrap().as_bytes();
        let header = v["header"].as_str().unwrap();
        assert_eq!(stripe_header(secret, t, body), header);
        assert_eq!(stripe(secret, Some(header), body, t + 10, 300), Ok(t));
        assert_eq!(
            stripe(
                secret,
                v["header_with_extra_bad_sig_still_valid"].as_str(),
                body,
                t,
                300
            ),
            Ok(t),
            "any v1 may match; v0 is ignored"
        );
        // Today's clock: the vector is years old.
        assert_eq!(
            stripe(secret, Some(header), body, 1_800_000_000, 300),
            Err(SignatureError::Stale { tolerance_s: 300 })
        );
        assert_eq!(
            stripe(secret, Some(header), body, t - 301, 300),
            Err(SignatureError::Stale { tolerance_s: 300 }),
            "a timestamp from the future is refused too"
        );
        let mut tampered = body.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            stripe(secret, Some(header), &tampered, t, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            stripe("whsec_other", Some(header), body, t, 300),
            Err(SignatureError::Mismatch)
        );
        // Re-stamped with a fresh time but the old signature: the time is signed.
        let restamped = header.replace("t=1700000000", "t=1700000100");
        assert_eq!(
            stripe(secret, Some(&restamped), body, t + 100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            stripe(secret, None, body, t, 300),
            Err(SignatureError::Missing)
        );
        assert!(matches!(
            stripe(secret, Some("garbage"), body, t, 300),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            stripe(secret, Some("t=1700000000,v0=abc"), body, t, 300),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn url_variants_drop_any_port_and_add_only_the_standard_one() {
        assert_eq!(
            url_variants("https://a.example:1234/p?q=1"),
            [
                "https://a.example/p?q=1".to_owned(),
                "https://a.example:1234/p?q=1".to_owned()
            ]
        );
        assert_eq!(
            url_variants("http://a.example/p"),
            [
                "http://a.example/p".to_owned(),
                "http://a.example:80/p".to_owned()
            ]
        );
        assert_eq!(
            url_variants("https://[::1]:8443/w"),
            [
                "https://[::1]/w".to_owned(),
                "https://[::1]:8443/w".to_owned()
            ]
        );
        assert_eq!(
            url_variants("https://[::1]/w"),
            [
                "https://[::1]/w".to_owned(),
                "https://[::1]:443/w".to_owned()
            ]
        );
    }
}
