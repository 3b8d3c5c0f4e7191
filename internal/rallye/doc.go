// Package rallye holds the few primitives every domain area of Rallye shares:
// the domain error type and its codes, roles and the authenticated principal,
// and the request-scoped logger. It imports no other package of the project.
package rallye
