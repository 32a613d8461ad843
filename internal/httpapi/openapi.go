package httpapi

import (
	_ "embed"
	"net/http"

	"github.com/gin-gonic/gin"
)

// openapiJSON is the OpenAPI 3.0 description of this API. The e2e suite
// validates every request and response it makes against it, so a change to
// a route or a JSON shape must change openapi.json too.
//
//go:embed openapi.json
var openapiJSON []byte

// OpenAPI returns the OpenAPI document served at GET /openapi.json. The
// slice is shared: callers must not modify it.
func OpenAPI() []byte { return openapiJSON }

// openapi serves the OpenAPI document. It needs no token.
func (s *Server) openapi(c *gin.Context) {
	c.Data(http.StatusOK, "application/json", openapiJSON)
}
