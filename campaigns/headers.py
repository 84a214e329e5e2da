"""Header names of our own, written by what sends (`compose`) and read back by what handles
returns (`bounces`, webhooks). Constants only: imports nothing, so either side may import it."""

#: Our signed header on every message we send: a returned original carrying it is
#: attributed to its delivery.
DELIVERY_HEADER = "X-Campaigns-Delivery"
