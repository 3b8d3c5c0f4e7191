package api

// Rules exposes the authorization table to the external tests.
var Rules = rules

// FullEvent exposes the event that sizes the request limit.
var FullEvent = fullEvent
