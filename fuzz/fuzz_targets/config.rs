//! Loading any config text never panics: it is a config or a list of located errors.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    gatehouse::install_crypto_providers();
    let dir = std::env::temp_dir().join("gatehouse-fuzz-config");
    match gatehouse::config::parse(text, &dir.join("gateway.yaml"), |name| (name == "SET").then(|| "value".to_string())) {
        Ok(_) => {}
        Err(errors) => assert!(!errors.0.is_empty()),
    }
});
