//! A question for `GET /v1/payments`, and the URL that asks it.

use url::Url;

use crate::{Error, PluginPaymentToken, Resource, UserId};

/// A question for `GET /v1/payments`: by plugin payment token, or by user and resource.
#[derive(Debug, Clone)]
pub(crate) enum Question {
    Token(PluginPaymentToken),
    User(UserId, Resource),
}

impl Question {
    /// The request URL: the base with the question's parameters, always
    /// form-encoded, so no value can add or change a parameter.
    pub(crate) fn url(&self, payments_url: &Url) -> Result<Url, Error> {
        let mut url = payments_url.clone();
        match self {
            Self::Token(token) => {
                url.query_pairs_mut()
                    .append_pair("plugin_payment_token", token.expose_secret());
            }
            Self::User(user, resource) => {
                let param = resource
                    .kind()
                    .query_param()
                    .ok_or_else(|| Error::InvalidRequest {
                        message: format!(
                            "resource type {} cannot be looked up by user ID",
                            resource.kind()
                        ),
                    })?;
                url.query_pairs_mut()
                    .append_pair("user_id", user.as_str())
                    .append_pair(param, resource.id().as_str());
            }
        }
        Ok(url)
    }

    pub(crate) fn secret(&self) -> Option<&str> {
        match self {
            Self::Token(token) => Some(token.expose_secret()),
            Self::User(..) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(feature = "proptest")]
    fn queries_are_encoded_so_no_value_adds_a_parameter() {
        let base = Url::parse("https://api.figma.com/v1/payments").unwrap();
        proptest::proptest!(proptest::prelude::ProptestConfig::with_cases(2000), |(raw in "[!-~]{1,64}")| {
            let token = PluginPaymentToken::new(&raw).unwrap();
            let url = Question::Token(token).url(&base).unwrap();
            let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            proptest::prop_assert_eq!(pairs, vec![("plugin_payment_token".to_owned(), raw.clone())]);
            proptest::prop_assert!(url.fragment().is_none());
            proptest::prop_assert_eq!(url.path(), "/v1/payments");
        });
    }

    #[test]
    fn user_questions_name_the_user_and_one_resource() {
        let base = Url::parse("https://api.figma.com/v1/payments").unwrap();
        let question = Question::User(UserId::new("7").unwrap(), Resource::widget("42").unwrap());
        assert_eq!(
            question.url(&base).unwrap().query(),
            Some("user_id=7&widget_id=42")
        );
        assert_eq!(question.secret(), None);
    }
}
