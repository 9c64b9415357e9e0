//! What the builders accept: a URL as a string, a [`url::Url`] or an [`http::Uri`]; a header
//! name or value, or a method, as a string or as the `http` crate's typed
//! [`HeaderName`]/[`HeaderValue`]/[`Method`].
//!
//! The traits are sealed: the set of types is this crate's to extend. Nothing is checked here:
//! every input is kept as given and validated at submit, where a bad one is refused with
//! `InvalidRequest` (a sentence naming the URL or the header), as a string is.
//!
//! The `http` crate here is 1.x, the ecosystem's current one (hyper 1, reqwest 0.12, axum,
//! tonic). awc, under the engine, still uses `http` 0.2, whose types are distinct: the typed
//! inputs cross over through their string or byte form, never as awc's types, so a caller
//! needs no second `http` in its tree.
//!
//! [`HeaderName`]: http::HeaderName
//! [`HeaderValue`]: http::HeaderValue
//! [`Method`]: http::Method

use bytes::Bytes;

mod sealed {
    pub trait Sealed {}
}

/// A URL a transfer accepts: `&str`, `String`, [`url::Url`] or [`http::Uri`] (http 1.x), or a
/// reference to one of them. An invalid URL is refused at submit with `InvalidRequest`.
///
/// ```
/// use actix_transfer::Download;
/// let uri: http::Uri = "http://127.0.0.1:8080/file.bin".parse().unwrap();
/// let from_uri = Download::new(uri);
/// let from_url = Download::new(url::Url::parse("http://127.0.0.1:8080/file.bin").unwrap());
/// let from_str = Download::new("http://127.0.0.1:8080/file.bin");
/// # let _ = (from_uri, from_url, from_str);
/// ```
pub trait IntoUrl: sealed::Sealed {
    /// The URL as text, parsed and checked at submit.
    #[doc(hidden)]
    fn into_url_string(self) -> String;
}

/// A request header name: `&str`, `String` or [`http::HeaderName`] (http 1.x), or a reference
/// to one. A name that is not a token is refused at submit with `InvalidRequest`.
pub trait IntoHeaderName: sealed::Sealed {
    /// The name as text, checked at submit.
    #[doc(hidden)]
    fn into_name_string(self) -> String;
}

/// A request header value: `&str`, `String` or [`http::HeaderValue`] (http 1.x, whose bytes
/// may be other than UTF-8), or a reference to one. A value with a control character (CR,
/// LF, NUL...) is refused at submit with `InvalidRequest`.
pub trait IntoHeaderValue: sealed::Sealed {
    /// The value's bytes, checked at submit.
    #[doc(hidden)]
    fn into_value_bytes(self) -> Bytes;
}

/// A request method: `&str`, `String` or [`http::Method`] (http 1.x). A method that is not a
/// token is refused at submit with `InvalidRequest`.
pub trait IntoMethod: sealed::Sealed {
    /// The method as text, checked at submit.
    #[doc(hidden)]
    fn into_method_string(self) -> String;
}

macro_rules! strings {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl IntoUrl for $t {
            fn into_url_string(self) -> String {
                self.to_string()
            }
        }
        impl IntoHeaderName for $t {
            fn into_name_string(self) -> String {
                self.to_string()
            }
        }
        impl IntoMethod for $t {
            fn into_method_string(self) -> String {
                self.to_string()
            }
        }
        impl IntoHeaderValue for $t {
            fn into_value_bytes(self) -> Bytes {
                Bytes::copy_from_slice(AsRef::<[u8]>::as_ref(&self))
            }
        }
    )*};
}

strings!(&str, &String);

impl sealed::Sealed for String {}

impl IntoUrl for String {
    fn into_url_string(self) -> String {
        self
    }
}

impl IntoHeaderName for String {
    fn into_name_string(self) -> String {
        self
    }
}

impl IntoMethod for String {
    fn into_method_string(self) -> String {
        self
    }
}

impl IntoHeaderValue for String {
    fn into_value_bytes(self) -> Bytes {
        Bytes::from(self)
    }
}

impl sealed::Sealed for url::Url {}
impl sealed::Sealed for &url::Url {}

impl IntoUrl for url::Url {
    fn into_url_string(self) -> String {
        self.into()
    }
}

impl IntoUrl for &url::Url {
    fn into_url_string(self) -> String {
        self.as_str().to_owned()
    }
}

impl sealed::Sealed for ::http::Uri {}
impl sealed::Sealed for &::http::Uri {}

impl IntoUrl for ::http::Uri {
    fn into_url_string(self) -> String {
        self.to_string()
    }
}

impl IntoUrl for &::http::Uri {
    fn into_url_string(self) -> String {
        self.to_string()
    }
}

impl sealed::Sealed for ::http::HeaderName {}
impl sealed::Sealed for &::http::HeaderName {}

impl IntoHeaderName for ::http::HeaderName {
    fn into_name_string(self) -> String {
        self.as_str().to_owned()
    }
}

impl IntoHeaderName for &::http::HeaderName {
    fn into_name_string(self) -> String {
        self.as_str().to_owned()
    }
}

impl sealed::Sealed for ::http::HeaderValue {}
impl sealed::Sealed for &::http::HeaderValue {}

impl IntoHeaderValue for ::http::HeaderValue {
    fn into_value_bytes(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl IntoHeaderValue for &::http::HeaderValue {
    fn into_value_bytes(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}

impl sealed::Sealed for ::http::Method {}
impl sealed::Sealed for &::http::Method {}

impl IntoMethod for ::http::Method {
    fn into_method_string(self) -> String {
        self.as_str().to_owned()
    }
}

impl IntoMethod for &::http::Method {
    fn into_method_string(self) -> String {
        self.as_str().to_owned()
    }
}

/// Every header of `map`, in its order (repeated names each once per value), as the builders
/// keep them.
pub(crate) fn header_pairs(map: ::http::HeaderMap) -> impl Iterator<Item = (String, Bytes)> {
    map.into_iter()
        .scan(None::<::http::HeaderName>, |last, (name, value)| {
            // `HeaderMap::into_iter` names a header once, then `None` for its further values.
            if let Some(name) = name {
                *last = Some(name);
            }
            let name = last.as_ref()?.as_str().to_owned();
            Some((name, Bytes::copy_from_slice(value.as_bytes())))
        })
}
