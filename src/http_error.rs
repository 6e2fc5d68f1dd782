//! One line for a failed HTTP request: reqwest's error and its causes
//! ("error sending request: tcp connect error: Connection refused"), without
//! the URL, which is long and may carry query parameters.

pub fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    message
}
