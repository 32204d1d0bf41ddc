package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/client"
)

// Create an environment, wait until it is ready, change it without
// overwriting anyone else's change, and delete it.
func Example() {
	c, err := client.New(client.Config{
		Endpoint: "https://isolation.example.com",
		Token:    os.Getenv("ISOLATION_TOKEN"),
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	project, err := c.Projects().Create(ctx, apiv1.ProjectCreate{Name: "payments"})
	if err != nil {
		log.Fatal(err)
	}
	env, err := c.Environments().Create(ctx, apiv1.EnvironmentCreate{
		ProjectID: project.ID,
		Name:      "api",
		Labels:    map[string]string{"app": "api"},
	})
	if err != nil {
		log.Fatal(err)
	}
	// No polling loop: the server holds the request until the state is reached.
	env, err = c.Environments().WaitFor(ctx, env.ID, apiv1.StateReady)
	if err != nil {
		log.Fatal(err) // a *client.StateError carries the server's state_message
	}
	fmt.Println(env.Enforcement.Address)

	desc := "the payments API"
	_, err = c.Environments().Update(ctx, env.ID, apiv1.EnvironmentPatch{Description: &desc}, env.ETag)
	if client.IsPreconditionFailed(err) {
		log.Fatal("someone changed the environment since we read it; read it again and retry")
	}

	if err := c.Environments().Delete(ctx, env.ID, ""); err != nil && !client.IsNotFound(err) {
		log.Fatal(err)
	}
	if err := c.Environments().WaitDeleted(ctx, env.ID); err != nil {
		log.Fatal(err)
	}
}
