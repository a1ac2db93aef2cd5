use super::*;

#[test]
fn datastore_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Datastore>();
}
