"""The sandbox's accepted credentials. They are not secrets: they open nothing but the sandbox.

The main job's `sandbox` environment and the tests use these.
"""

CHECKMARKET_MASTER_KEY = "sandbox-cm-master-key"
CHECKMARKET_KEY = "sandbox-cm-key-full"
# A valid key without the Contacts roles: every opt-out call answers 403.
CHECKMARKET_KEY_NO_ROLES = "sandbox-cm-key-noroles"

SLICKTEXT_PUBLIC_KEY = "pub_5a9d1e0c7b3f4a2e8d6c1b0a9f8e7d6c"
SLICKTEXT_PRIVATE_KEY = "sandbox-st-private-key"

SLICKTEXT_V2_API_KEY = "sandbox-st-v2-api-key"
SLICKTEXT_V2_BRAND_ID = 40123

OPTIZMO_API_KEY = "optizmo_api_sandbox_key_1"
# A second account: its upload references are not the first key's (403).
OPTIZMO_OTHER_API_KEY = "optizmo_api_sandbox_key_2"
OPTIZMO_EMAIL_LIST_ID = "901fad4c46a1e723"
OPTIZMO_SMS_LIST_ID = "5c2e8b1f0d3a7e94"
# An email list that starts empty: somewhere to write a list read from elsewhere (benchmark).
OPTIZMO_SPARE_EMAIL_LIST_ID = "3d8f6a2c9b1e4f70"
# Lists that exist but refuse collect (docs/providers/optizmo.md, 'Collect').
OPTIZMO_GROUPED_LIST_ID = "77aa00bb11cc22dd"
