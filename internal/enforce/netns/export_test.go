package netns

// EncodeRecord lets tests write a record as an older driver did.
var EncodeRecord = encodeRecord
