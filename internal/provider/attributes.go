package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	dschema "github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/isolationhq/terraform-provider-isolation/internal/apiv1"
	"github.com/isolationhq/terraform-provider-isolation/internal/provider/validators"
)

// The schema of an attribute that several resources or data sources share
// is written once, here, so the same attribute gets the same type, plan
// modifiers and validators everywhere. Only its description, which names
// the object, differs.

// idAttribute is a resource's id: made by the server, kept across plans.
func idAttribute(description string) schema.StringAttribute {
	return computedOnceAttribute(description)
}

// createdAtAttribute is a resource's created_at.
func createdAtAttribute(kind string) schema.StringAttribute {
	return computedOnceAttribute("When the " + kind + " was created (RFC 3339).")
}

// computedOnceAttribute is a value the server sets on create and never
// changes, the one kind of value UseStateForUnknown suits.
func computedOnceAttribute(description string) schema.StringAttribute {
	return schema.StringAttribute{
		MarkdownDescription: description,
		Computed:            true,
		PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
	}
}

// projectIDAttribute is the project a resource belongs to; moving it to
// another project is a new object.
func projectIDAttribute(description string) schema.StringAttribute {
	return schema.StringAttribute{
		MarkdownDescription: description,
		Required:            true,
		Validators:          []validator.String{validators.ID()},
		PlanModifiers:       []planmodifier.String{stringplanmodifier.RequiresReplace()},
	}
}

// nameAttribute is a resource's name, a DNS label; modifiers say whether
// changing it replaces the object (a token) or not.
func nameAttribute(description string, modifiers ...planmodifier.String) schema.StringAttribute {
	return schema.StringAttribute{
		MarkdownDescription: description,
		Required:            true,
		Validators:          []validator.String{validators.Name()},
		PlanModifiers:       modifiers,
	}
}

// descriptionAttribute is a resource's free-text description, "" when left out.
func descriptionAttribute(description string) schema.StringAttribute {
	return schema.StringAttribute{
		MarkdownDescription: description,
		Optional:            true,
		Computed:            true,
		Default:             stringdefault.StaticString(""),
		Validators:          []validator.String{validators.Description()},
	}
}

// labelsAttribute is the labels attribute of every resource: Optional and
// Computed with an empty default, so leaving labels out and writing
// `labels = {}` are the same and neither ever shows a diff.
func labelsAttribute(kind string) schema.MapAttribute {
	return schema.MapAttribute{
		MarkdownDescription: "Labels of the " + kind + ", as Kubernetes writes them: keys are an optional DNS subdomain prefix and `/`, " +
			"then a name of up to 63 letters, digits, `-`, `_` or `.`; values are empty or up to 63 such characters. " +
			fmt.Sprintf("At most %d labels, of at most %d bytes of keys and values together. Defaults to `{}`.", apiv1.MaxLabels, apiv1.MaxLabelBytes),
		ElementType: types.StringType,
		Optional:    true,
		Computed:    true,
		Default:     mapdefault.StaticValue(labelsValue(nil)),
		Validators:  []validator.Map{validators.Labels()},
	}
}

// timeoutsBlock is the timeouts block of a resource that waits for the
// server (environments, policies).
func timeoutsBlock(ctx context.Context) map[string]schema.Block {
	return map[string]schema.Block{
		"timeouts": timeouts.Block(ctx, timeouts.Opts{Create: true, Update: true, Delete: true}),
	}
}

// lookupAttribute is an attribute a data source finds its object by (id,
// project_id, name): set in the configuration or read from the object.
func lookupAttribute(description string, v validator.String) dschema.StringAttribute {
	return dschema.StringAttribute{
		MarkdownDescription: description,
		Optional:            true,
		Computed:            true,
		Validators:          []validator.String{v},
	}
}

// computedString and its kin are a data source's read-only attributes.
func computedString(description string) dschema.StringAttribute {
	return dschema.StringAttribute{MarkdownDescription: description, Computed: true}
}

func computedInt64(description string) dschema.Int64Attribute {
	return dschema.Int64Attribute{MarkdownDescription: description, Computed: true}
}

func computedBool(description string) dschema.BoolAttribute {
	return dschema.BoolAttribute{MarkdownDescription: description, Computed: true}
}

func computedStringMap(description string) dschema.MapAttribute {
	return dschema.MapAttribute{MarkdownDescription: description, ElementType: types.StringType, Computed: true}
}

func computedStringList(description string) dschema.ListAttribute {
	return dschema.ListAttribute{MarkdownDescription: description, ElementType: types.StringType, Computed: true}
}

// computedObjects is a data source's read-only list of objects.
func computedObjects(description string, attrs map[string]dschema.Attribute) dschema.ListNestedAttribute {
	return dschema.ListNestedAttribute{
		MarkdownDescription: description,
		Computed:            true,
		NestedObject:        dschema.NestedAttributeObject{Attributes: attrs},
	}
}
