//! Every row of `shared/testdata/totp_vectors.tsv` through `coffer totp
//! --at`, each stored as an otpauth URI carrying its algorithm, digits and
//! period; plus the other accepted secret forms.

use std::path::PathBuf;

use coffer_tests::{str_field, Daemon};

struct Vector {
    line: usize,
    algorithm: String,
    secret: String,
    time: u64,
    digits: u32,
    period: u64,
    expected: String,
}

/// `$CARGO_MANIFEST_DIR/../../shared/...` (the repository's shared folder
/// beside the workspace), else `$CARGO_MANIFEST_DIR/../shared/...`.
fn vectors_path() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../../shared/testdata/totp_vectors.tsv"),
        manifest.join("../shared/testdata/totp_vectors.tsv"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "totp_vectors.tsv not found; looked at {} and {}",
                candidates[0].display(),
                candidates[1].display()
            )
        })
}

fn vectors() -> Vec<Vector> {
    let path = vectors_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines = text.lines().enumerate();
    let (_, header) = lines.next().expect("vectors file is empty");
    let columns: Vec<&str> = header.split('\t').collect();
    assert_eq!(
        columns,
        [
            "algorithm",
            "secret_base32",
            "unix_time",
            "digits",
            "period",
            "expected_code",
            "source"
        ],
        "unexpected header in {}",
        path.display()
    );
    lines
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f.len(), 7, "line {}: {l:?}", i + 1);
            Vector {
                line: i + 1,
                algorithm: f[0].to_string(),
                secret: f[1].to_string(),
                time: f[2].parse().expect("unix_time"),
                digits: f[3].parse().expect("digits"),
                period: f[4].parse().expect("period"),
                expected: f[5].to_string(),
            }
        })
        .collect()
}

#[test]
fn every_vector_passes_through_coffer_totp_at() {
    let rows = vectors();
    // 48 when this was written (49 lines with the header); more is fine.
    assert!(rows.len() >= 48, "only {} vectors", rows.len());
    let d = Daemon::start();
    d.init();
    for v in &rows {
        let name = format!("row{}", v.line);
        // Parameters in an unusual order, label and issuer percent-encoded.
        let uri = format!(
            "otpauth://totp/Vectors%20Inc:row{line}%40example.org?period={period}&algorithm={alg}&secret={secret}&digits={digits}&issuer=Vectors%20Inc",
            line = v.line,
            period = v.period,
            alg = v.algorithm,
            secret = v.secret,
            digits = v.digits,
        );
        d.ok(&["add", "totp", &name], format!("{uri}\n"));
        let at = v.time.to_string();
        let code = d.ok(&["totp", &name, "--at", &at], "");
        assert_eq!(
            code.trim_end(),
            v.expected,
            "line {}: {} {} digits, {} s period, at {}",
            v.line,
            v.algorithm,
            v.digits,
            v.period,
            v.time
        );
        let j = d.json(&["totp", &name, "--at", &at, "--json"], "");
        assert_eq!(j["code"], v.expected.as_str(), "line {}", v.line);
        assert_eq!(j["digits"], v.digits, "line {}", v.line);
        assert_eq!(j["period"], v.period, "line {}", v.line);
        assert_eq!(j["algorithm"], v.algorithm.as_str(), "line {}", v.line);
        assert_eq!(
            j["seconds_remaining"],
            v.period - v.time % v.period,
            "line {}",
            v.line
        );
    }
    assert_eq!(d.status()["items"], rows.len());
}

#[test]
fn other_secret_forms_store_and_compute() {
    let d = Daemon::start();
    d.init();
    // RFC 6238's SHA1 secret as a bare base32 secret: lowercase, spaced,
    // as people paste it; defaults are SHA1, 6 digits, 30 s.
    let expected_at_59 = vectors()
        .into_iter()
        .find(|v| {
            v.algorithm == "SHA1"
                && v.secret == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
                && v.time == 59
                && v.digits == 6
                && v.period == 30
        })
        .expect("the vectors include SHA1/6/30 at t=59")
        .expected;
    for (i, form) in [
        "gezdgnbvgy3tqojqgezdgnbvgy3tqojq",
        "gezd gnbv gy3t qojq gezd gnbv gy3t qojq",
        "  GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ  ",
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("bare{i}");
        d.ok(&["add", "totp", &name], format!("{form}\n"));
        assert_eq!(
            d.ok(&["totp", &name, "--at", "59"], "").trim_end(),
            expected_at_59,
            "{form:?}"
        );
        // Stored in canonical form.
        let view = d.json(&["get", &name, "--json", "--reveal"], "");
        let uri = str_field(&view["fields"], "totp");
        assert!(
            uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            "{form:?} stored as {uri}"
        );
    }
    // Steam Guard (KeePassXC's test secret; codes from the Steam app).
    d.ok(
        &["add", "totp", "steam"],
        "steam://63BEDWCQZKTQWPESARIERL5DTTQFCJTK\n",
    );
    assert_eq!(
        d.ok(&["totp", "steam", "--at", "1511200518"], ""),
        "FR8RV\n"
    );
    let j = d.json(&["totp", "steam", "--at", "1511200714", "--json"], "");
    assert_eq!(j["code"], "9P3VP");
    assert_eq!(j["digits"], 5);
    assert_eq!(j["period"], 30);
    assert_eq!(j["algorithm"], "STEAM");
    let view = d.json(&["get", "steam", "--json", "--reveal"], "");
    assert!(
        str_field(&view["fields"], "totp").contains("encoder=steam"),
        "{view:#}"
    );
    // The otpauth form with encoder=steam gives the same codes.
    d.ok(
        &["add", "totp", "steam-uri"],
        "otpauth://totp/Steam:bob?secret=63BEDWCQZKTQWPESARIERL5DTTQFCJTK&issuer=Steam&encoder=steam\n",
    );
    assert_eq!(
        d.ok(&["totp", "steam-uri", "--at", "1511200518"], ""),
        "FR8RV\n"
    );
}
