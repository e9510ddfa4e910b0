//! Account files shared by the user module's tests.

use super::accounts::Db;

pub(super) const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/bash
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

+nisuser::::::
-@badguys::::::
app:x:1000:1000:App,,,:/home/app:/bin/bash
broken line
bob:x:1001:1001::/home/bob:
toor:x:0:0:evil twin:/root:/bin/sh
";

pub(super) const GROUP: &str = "\
root:x:0:
daemon:x:1:
app:x:1000:
bob:x:1001:
audio:x:29:bob,app
video:x:44:app
www:x:33:,app,
+:::
";

pub(super) fn db() -> Db {
    Db::parse(PASSWD.as_bytes(), GROUP.as_bytes())
}
