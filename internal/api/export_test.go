package api

// Rules exposes the authorization table to the external tests.
var Rules = rules
